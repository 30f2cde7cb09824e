"""Marker tables for the braking step: a token-level Aho–Corasick automaton.

Markers (SBT's overthinking phrases, "Wait", "Let me verify", ...) are matched on *token ids*,
not text: every tokenisation of every phrase is one pattern. The automaton's goto and fail
functions are folded into one dense transition table over token *classes*: each token that
occurs in some marker gets its own class (1, 2, ...), every other token shares class 0. The
tables are then ``[S, C]`` with ``S`` states and ``C`` classes (a few hundred each for SBT's
26 markers), and one ``[V]`` int32 token->class map — small even at V = 152k.

Per state, ``match_len`` is the length of the longest marker that ends there (following the
fail chain, so a state also reports the markers that are its suffixes); 0 when none does.
Every marker ending at a position is a suffix of the longest one, so the longest alone decides
which tokens the occurrences ending there cover.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral

import torch

from mta_kernels.braking.layout import TableField

__all__ = ["SBT_MARKERS", "MarkerTables", "DEFAULT_BRAKE_TEXT"]

#: The 26 overthinking markers of Self-Braking Tuning (arXiv 2505.14604); mta.sbt.markers
#: holds the same tuple (torch-free), and a test keeps the two equal.
SBT_MARKERS: tuple[str, ...] = (
    "Another", "Backtrack", "But", "Check", "Going back", "Hmm", "Hmmm", "However", "Hold on",
    "Instead of", "Just to be thorough", "Just to make sure", "Let me check",
    "Let me just double-check", "Let me try another", "Let me verify", "Maybe",
    "Maybe I can consider", "Maybe I should consider", "Might", "Not sure", "Perhaps",
    "Recheck", "Retry", "Trace back", "Wait",
)

#: Forced text that ends thinking once a trigger fires (SBT's natural-language brake cue).
DEFAULT_BRAKE_TEXT = "\n\nWait, I've verified my answer. No need to continue thinking.\n</think>\n\n"


# Each table: its field, the table_layout entry holding its byte offset, its dtype.
_TABLES: tuple[tuple[str, TableField, torch.dtype], ...] = (
    ("token_class", TableField.TOKEN_CLASS_OFFSET, torch.int32),
    ("transitions", TableField.TRANSITIONS_OFFSET, torch.int32),
    ("match_len", TableField.MATCH_LEN_OFFSET, torch.int32),
    ("step_class", TableField.STEP_CLASS_OFFSET, torch.uint8),
    ("step_table", TableField.STEP_TABLE_OFFSET, torch.int32),
    ("brake_ids", TableField.BRAKE_IDS_OFFSET, torch.int64),
)


def _table_shapes(layout: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    V, S, C = layout[TableField.VOCAB], layout[TableField.STATES], layout[TableField.CLASSES]
    return {"token_class": (V,), "transitions": (S, C), "match_len": (S,), "step_class": (V,),
            "step_table": (layout[TableField.STEP_CLASSES], 3), "brake_ids": (layout[TableField.BRAKE_LEN],)}


def table_views(packed: torch.Tensor, layout: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """The tables of a packed ``uint8`` buffer as typed views, by field name."""
    shapes, views = _table_shapes(layout), {}
    for name, entry, dtype in _TABLES:
        offset, nbytes = layout[entry], math.prod(shapes[name]) * dtype.itemsize
        views[name] = packed[offset:offset + nbytes].view(dtype).view(shapes[name])
    return views


def _check_contents(tables: dict[str, torch.Tensor], S: int, C: int, NS: int, end_think_id: int) -> None:
    """Every value the kernels use as an index lies inside its table (one host read of the
    tables, when they are built; the kernels then clamp instead of checking each step)."""
    ranges = (  # name, lowest, highest allowed, what the values index
        ("token_class", 0, C - 1, f"the C={C} token classes"),
        ("transitions", 0, S - 1, f"the S={S} automaton states"),
        ("match_len", 0, None, "marker lengths"),
        ("step_class", 0, NS - 1, f"the NS={NS} rows of step_table"),
        ("step_table", 0, None, "codes"),
        ("brake_ids", 0, None, "token ids"),
    )
    for name, lo, hi, what in ranges:
        t = tables[name]
        if t.numel() == 0:
            continue
        low, high = int(t.min()), int(t.max())
        if low < lo or (hi is not None and high > hi):
            bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise ValueError(f"malformed marker tables: {name} holds {low if low < lo else high}, outside {bound} "
                             f"({what})")
    if bool(((tables["step_table"] & 3) > 2).any()):
        raise ValueError("malformed marker tables: step_table holds a next delimiter state outside 0..2")
    if end_think_id < 0:
        raise ValueError(f"malformed marker tables: end_think_id must be >= 0, got {end_think_id}")


def _pack(tables: dict[str, torch.Tensor], end_think_id: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(packed uint8 buffer, layout) of the six tables, after checking their dtypes and shapes."""
    for name, _, dtype in _TABLES:
        t = tables[name]
        if not isinstance(t, torch.Tensor) or t.dtype != dtype:
            raise ValueError(f"malformed marker tables: {name} must be a {dtype} tensor, "
                             f"got {getattr(t, 'dtype', type(t).__name__)}")
    V = tables["token_class"].shape[0] if tables["token_class"].dim() == 1 else -1
    S, C = tuple(tables["transitions"].shape) if tables["transitions"].dim() == 2 else (0, 0)
    NS = tables["step_table"].shape[0] if tables["step_table"].dim() == 2 else 0
    K = tables["brake_ids"].shape[0] if tables["brake_ids"].dim() == 1 else 0
    layout = [0] * len(TableField)
    layout[TableField.VOCAB], layout[TableField.STATES], layout[TableField.CLASSES] = V, S, C
    layout[TableField.STEP_CLASSES], layout[TableField.BRAKE_LEN] = NS, K
    layout[TableField.END_THINK_ID] = end_think_id
    shapes = _table_shapes(tuple(layout))
    for name, shape in shapes.items():
        if V < 0 or S < 1 or C < 1 or NS < 1 or K < 1 or tuple(tables[name].shape) != shape:
            raise ValueError(f"malformed marker tables: token_class [V], transitions [S >= 1, C >= 1], "
                             f"match_len [S], step_class [V], step_table [NS >= 1, 3] and brake_ids [K >= 1] "
                             f"expected, got {name} of shape {tuple(tables[name].shape)}")
    devices = {t.device for t in tables.values()}
    if len(devices) != 1:
        raise ValueError(f"malformed marker tables: tensors on several devices {sorted(map(str, devices))}")
    _check_contents(tables, S, C, NS, end_think_id)
    # Each table at an 8-byte aligned offset, so every typed view is aligned.
    offset = 0
    for name, entry, dtype in _TABLES:
        offset = -(-offset // 8) * 8
        layout[entry] = offset
        offset += math.prod(shapes[name]) * dtype.itemsize
    packed = torch.zeros(offset, dtype=torch.uint8, device=devices.pop())
    for name, view in table_views(packed, tuple(layout)).items():
        view.copy_(tables[name])
    return packed, tuple(layout)


@dataclass(frozen=True)
class MarkerTables:
    """Compiled marker automaton, step-delimiter set and brake sequence (tensors, movable).

    Every table is a typed view of one ``uint8`` buffer, ``packed``, that ``layout`` (sizes,
    ``end_think_id`` and byte offsets, :class:`~mta_kernels.braking.layout.TableField`)
    describes: the op takes those two. The fields are read-only (frozen), so the views and
    the buffer cannot drift apart.

    Attributes
    ----------
    token_class : Tensor [V] int32
        Class of each token; 0 for tokens in no marker.
    transitions : Tensor [S, C] int32
        Next automaton state from (state, class); state 0 is the root.
    match_len : Tensor [S] int32
        Length (in tokens) of the longest marker ending at each state, 0 if none.
    step_class : Tensor [V] uint8
        Class of each token for the step-delimiter matcher (0: ordinary text).
    step_table : Tensor [NS, 3] int32
        Per step class and matcher state (0 after text, 1 after a newline, 2 inside a
        break): the next state plus 4 times the delimiters the token completes.
    brake_ids : Tensor [K] int64
        The forced sequence; its last token is ``end_think_id``.
    end_think_id : int
        The token that ends thinking.
    packed : Tensor [N] uint8
        The buffer holding every table.
    layout : tuple of int
        The op's ``table_layout``.
    """

    token_class: torch.Tensor
    transitions: torch.Tensor
    match_len: torch.Tensor
    step_class: torch.Tensor
    step_table: torch.Tensor
    brake_ids: torch.Tensor
    end_think_id: int

    @property
    def vocab_size(self) -> int:
        return int(self.token_class.shape[0])

    @property
    def num_states(self) -> int:
        return int(self.transitions.shape[0])

    @property
    def max_forced_id(self) -> int:
        """Largest token id the step may force (known on the host: no sync to validate)."""
        return self._max_forced_id

    @property
    def device(self) -> torch.device:
        return self.packed.device

    def __post_init__(self) -> None:
        if isinstance(self.end_think_id, bool) or not isinstance(self.end_think_id, Integral):
            raise TypeError(f"end_think_id must be an int, got {type(self.end_think_id).__name__}")
        object.__setattr__(self, "end_think_id", int(self.end_think_id))
        tables = {name: getattr(self, name) for name, _, _ in _TABLES}
        packed, layout = _pack(tables, self.end_think_id)
        self._set_packed(packed, layout, max(self.end_think_id, *tables["brake_ids"].cpu().tolist()))

    def _set_packed(self, packed: torch.Tensor, layout: tuple[int, ...], max_forced_id: int) -> None:
        object.__setattr__(self, "packed", packed)
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "_max_forced_id", max_forced_id)
        for name, view in table_views(packed, layout).items():
            object.__setattr__(self, name, view)

    def to(self, device: torch.device | str) -> MarkerTables:
        """The tables on ``device`` (``self`` when they are there already)."""
        packed = self.packed.to(device)
        if packed is self.packed:
            return self
        out = object.__new__(MarkerTables)
        out._set_packed(packed, self.layout, self._max_forced_id)
        object.__setattr__(out, "end_think_id", self.end_think_id)
        return out

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_token_ids(
        cls,
        markers: Iterable[Sequence[int]],
        step_token_ids: Iterable[int],
        end_think_id: int,
        brake_ids: Sequence[int],
        vocab_size: int,
        *,
        step_tables: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> MarkerTables:
        """Compile token-id marker sequences into the automaton tables.

        Parameters
        ----------
        markers : iterable of sequences of int
            Each one tokenisation of one marker phrase (empty ones are ignored, duplicates
            merge).
        step_token_ids : iterable of int
            Tokens whose text contains the step delimiter: each adds one step.
        end_think_id : int
            The token that ends thinking.
        brake_ids : sequence of int
            The forced sequence; must end with ``end_think_id``.
        vocab_size : int
            Size of the token->class map (tokens at or above it are class 0, never steps).
        step_tables : (step_class, step_table), optional
            A step-delimiter matcher that replaces ``step_token_ids`` (``from_tokenizer``
            builds one that also counts a delimiter split across tokens).

        Examples
        --------
        >>> t = MarkerTables.from_token_ids([[5, 6], [6]], [9], 3, [7, 3], vocab_size=10)
        >>> t.match_len.tolist()  # root, "5", "5 6", "6"
        [0, 0, 2, 1]
        """
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")

        def check_id(t: object, name: str) -> int:
            if isinstance(t, bool) or not isinstance(t, int) and not (isinstance(t, torch.Tensor) and t.dim() == 0):
                raise TypeError(f"{name} must hold ints, got {type(t).__name__}")
            t = int(t)
            if not 0 <= t < vocab_size:
                raise ValueError(f"{name} holds token id {t}, outside [0, vocab_size={vocab_size})")
            return t

        pats = []
        for m in markers:
            if isinstance(m, (str, bytes)):
                raise TypeError("markers must be sequences of token ids (use from_tokenizer for text)")
            p = tuple(check_id(t, "markers") for t in m)
            if p:
                pats.append(p)
        end_think_id = check_id(end_think_id, "end_think_id")
        brake = [check_id(t, "brake_ids") for t in brake_ids]
        if not brake or brake[-1] != end_think_id:
            raise ValueError(f"brake_ids must be non-empty and end with end_think_id={end_think_id}, got {brake}")
        steps = [check_id(t, "step_token_ids") for t in step_token_ids]

        # Token classes: first-seen order, deterministic.
        classes: dict[int, int] = {}
        for p in pats:
            for t in p:
                classes.setdefault(t, len(classes) + 1)
        C = len(classes) + 1
        # Trie.
        children: list[dict[int, int]] = [{}]
        depth = [0]
        terminal = [0]
        for p in pats:
            s = 0
            for t in p:
                c = classes[t]
                nxt = children[s].get(c)
                if nxt is None:
                    nxt = len(children)
                    children[s][c] = nxt
                    children.append({})
                    depth.append(depth[s] + 1)
                    terminal.append(0)
                s = nxt
            terminal[s] = len(p)
        S = len(children)
        # BFS: fail links folded into a dense goto table.
        trans = [[0] * C for _ in range(S)]
        match = [0] * S
        fail = [0] * S
        queue: deque[int] = deque()
        for c, nxt in children[0].items():
            trans[0][c] = nxt
            queue.append(nxt)
        while queue:
            s = queue.popleft()
            match[s] = max(terminal[s], match[fail[s]])
            row, frow = trans[s], trans[fail[s]]
            for c in range(C):
                nxt = children[s].get(c)
                if nxt is None:
                    row[c] = frow[c]
                else:
                    fail[nxt] = frow[c]
                    row[c] = nxt
                    queue.append(nxt)
        token_class = torch.zeros(vocab_size, dtype=torch.int32)
        if classes:
            token_class[torch.tensor(list(classes), dtype=torch.int64)] = torch.arange(1, C, dtype=torch.int32)
        if step_tables is None:
            step_class = torch.zeros(vocab_size, dtype=torch.uint8)
            if steps:
                step_class[torch.tensor(steps, dtype=torch.int64)] = 1
            # Class 0 leaves the matcher after text; class 1 completes one delimiter.
            step_table = torch.tensor([[0, 0, 0], [4, 4, 4]], dtype=torch.int32)
        else:
            step_class, step_table = step_tables
            if step_class.shape != (vocab_size,) or step_class.dtype != torch.uint8:
                raise ValueError(f"step_tables[0] must be a uint8 [{vocab_size}] tensor")
            if step_table.dim() != 2 or step_table.shape[1] != 3 or step_table.dtype != torch.int32:
                raise ValueError("step_tables[1] must be an int32 [NS, 3] tensor")
            if int(step_class.max()) >= step_table.shape[0] or not bool(((step_table & 3) <= 2).all()):
                raise ValueError("step_tables: a class without a table row, or a state outside 0..2")
        return cls(
            token_class=token_class,
            transitions=torch.tensor(trans, dtype=torch.int32).reshape(S, C),
            match_len=torch.tensor(match, dtype=torch.int32),
            step_class=step_class.contiguous(),
            step_table=step_table.contiguous(),
            brake_ids=torch.tensor(brake, dtype=torch.int64),
            end_think_id=end_think_id,
        )

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer,
        markers: Iterable[str] = SBT_MARKERS,
        step_delimiter: str = "\n\n",
        end_think: str = "</think>",
        brake_text: str = DEFAULT_BRAKE_TEXT,
        vocab_size: int | None = None,
    ) -> MarkerTables:
        """Build the tables from text with a Hugging Face tokenizer.

        Every tokenisation the tokenizer produces for each phrase is a pattern: the phrase as
        written, lower-cased first letter and capitalised, each with and without a leading
        space. With the default ``step_delimiter="\\n\\n"`` steps are counted by a blank-line
        matcher over the decoded token texts, the rule of :func:`mta.sbt.split_steps`
        (``\\n[ \\t]*\\n``, a run of blank lines is one delimiter, blank lines before the first
        step are none), so a delimiter split across tokens ("\\n" then "\\n", as SmolLM2
        often writes it) counts too; another delimiter counts the tokens whose text contains
        it. ``end_think`` must be a single token (added to the tokenizer
        as a special token if the model uses one). ``brake_text`` must end with ``end_think``
        followed only by whitespace; what follows ``end_think`` is not forced.

        ``vocab_size`` defaults to ``len(tokenizer)``; pass the model's (often padded)
        logits width if larger.
        """
        def encode(text: str) -> list[int]:
            return list(tokenizer.encode(text, add_special_tokens=False))

        end_ids = encode(end_think)
        if len(end_ids) != 1:
            raise ValueError(f"end_think={end_think!r} must be one token, the tokenizer gives {end_ids}")
        end_id = end_ids[0]
        cut = brake_text.rfind(end_think)
        if cut < 0 or brake_text[cut + len(end_think):].strip():
            raise ValueError(f"brake_text must end with end_think={end_think!r} (whitespace after it is dropped)")
        head = brake_text[:cut]
        brake_ids = (encode(head) if head else []) + [end_id]
        pats: set[tuple[int, ...]] = set()
        for phrase in markers:
            if not isinstance(phrase, str):
                raise TypeError(f"markers must be strings, got {type(phrase).__name__}")
            if not phrase:
                continue
            for variant in {phrase, phrase[0].upper() + phrase[1:], phrase[0].lower() + phrase[1:]}:
                for text in (variant, " " + variant):
                    ids = tuple(encode(text))
                    if ids:
                        pats.add(ids)
        V = len(tokenizer) if vocab_size is None else int(vocab_size)
        n = len(tokenizer)
        decoded = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False)
        if step_delimiter == "\n\n":
            return cls.from_token_ids(sorted(pats), [], end_id, brake_ids, V,
                                      step_tables=blank_line_step_tables(decoded, V))
        steps = [i for i, text in enumerate(decoded) if step_delimiter in text]
        return cls.from_token_ids(sorted(pats), steps, end_id, brake_ids, V)


# Blank-line matcher states: after text, after one newline (and spaces / tabs), inside a break.
_TEXT, _NEWLINE, _BREAK = 0, 1, 2


def _run_blank_lines(text: str, state: int) -> tuple[int, int]:
    """(state after ``text``, delimiters completed in it), the regex ``\\n[ \\t]*\\n\\s*``."""
    breaks = 0
    for ch in text:
        if ch == "\n":
            if state == _NEWLINE:
                breaks += 1
            state = _BREAK if state != _TEXT else _NEWLINE
        elif ch in " \t":
            pass
        elif state == _BREAK and ch.isspace():
            pass
        else:
            state = _TEXT
    return state, breaks


def blank_line_step_tables(texts: Sequence[str], vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(step_class [V] uint8, step_table [NS, 3] int32)`` of the blank-line matcher.

    Tokens with the same behaviour from each of the three states share a class; class 0 is
    ordinary text (every state -> after text, no delimiter). Tokens past ``texts`` are class 0.
    """
    ordinary = ((_TEXT, 0),) * 3
    behaviours = {ordinary: 0}
    step_class = torch.zeros(vocab_size, dtype=torch.uint8)
    ids = []
    for i, text in enumerate(texts[:vocab_size]):
        key = tuple(_run_blank_lines(text, s) for s in (_TEXT, _NEWLINE, _BREAK))
        c = behaviours.setdefault(key, len(behaviours))
        if c:
            ids.append((i, c))
    if len(behaviours) > 255:
        raise ValueError(f"{len(behaviours)} step-delimiter classes: more than a uint8 holds")
    if ids:
        idx, cls_ = zip(*ids)
        step_class[torch.tensor(idx)] = torch.tensor(cls_, dtype=torch.uint8)
    table = torch.zeros(len(behaviours), 3, dtype=torch.int32)
    for key, c in behaviours.items():
        table[c] = torch.tensor([nxt + 4 * n for nxt, n in key], dtype=torch.int32)
    return step_class, table
