"""Stop strings, checked on the host every few decode steps.

Each check copies the tokens generated since the last one (one device-to-host transfer for
the whole batch), decodes for each row only a tail window — the new tokens plus enough
earlier ones to hold any stop string that straddles the previous check — and searches it.
A row that contains a stop string is cut after the token that completed it: the token ids
and logprobs keep that token (the model did emit it), the text ends before the stop string.
"""

from __future__ import annotations

__all__ = ["StopChecker", "trim_text"]


class StopChecker:
    """Tracks the generated tokens of every row on the host and finds stop strings.

    Parameters
    ----------
    tokenizer
        Decodes token ids.
    stop : list of str
        Non-empty stop strings.
    rows : int
        Batch size.
    """

    def __init__(self, tokenizer, stop: list[str], rows: int):
        self.tokenizer = tokenizer
        self.stop = stop
        # Every non-special token decodes to at least one byte, so a stop string of b bytes
        # spans at most b tokens; the margin covers special tokens and partial characters.
        self.lookback = max(len(s.encode("utf-8")) for s in stop) + 4
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.searched = [0] * rows  # tokens already searched (whole) per row
        self.cut: dict[int, int] = {}  # row -> number of tokens kept (through the stop)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _contains_stop(self, ids: list[int]) -> bool:
        text = self._decode(ids)
        return any(s in text for s in self.stop)

    def update(self, new_tokens: list[list[int]], lengths: list[int]) -> list[int]:
        """Add each row's tokens generated since the last call; return rows that now hit a stop.

        ``new_tokens[r]`` are the tokens of the steps since the last call (padding after a
        row finished included); ``lengths[r]`` is how many tokens row ``r`` has generated in
        all, so the padding is dropped here.
        """
        hits = []
        for row, (chunk, length) in enumerate(zip(new_tokens, lengths)):
            if row in self.cut:
                continue
            have = self.tokens[row]
            if length > len(have):
                have.extend(chunk[: length - len(have)])
            if len(have) == self.searched[row]:
                continue
            start = max(0, self.searched[row] - self.lookback)
            if self._contains_stop(have[start:]):
                # the shortest prefix that holds a stop string: its last token completed it
                end = self.searched[row] + 1
                while end < len(have) and not self._contains_stop(have[start:end]):
                    end += 1
                self.cut[row] = end
                hits.append(row)
            self.searched[row] = len(have)
        return hits


def trim_text(text: str, stop: list[str]) -> str:
    """``text`` up to (not including) the earliest stop string in it."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(cuts)] if cuts else text
