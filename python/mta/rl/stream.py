"""The order prompts are trained in: a fresh seeded permutation per pass over the data.

Its position (pass, index) is part of the checkpoint, so a resumed run draws exactly the
prompts the uninterrupted run would have drawn next. One-shot RL is a data set of one
problem: every draw is that problem.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from mta.data import Problem

__all__ = ["PromptStream"]


class PromptStream:
    """Endless draws from ``problems``, each pass in its own seeded order.

    Parameters
    ----------
    problems : list of Problem
        At least one.
    seed : int
        Seeds the permutation of every pass (pass ``e`` uses ``seed`` and ``e``).
    """

    def __init__(self, problems: Sequence[Problem], seed: int = 0):
        if len(problems) == 0:
            raise ValueError("the data set is empty: nothing to train on")
        self.problems = list(problems)
        self.seed = seed
        self.epoch = 0
        self.cursor = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self.problems)))
        random.Random(f"{self.seed}/{epoch}").shuffle(order)
        return order

    def next(self, k: int) -> list[tuple[int, Problem]]:
        """The next ``k`` problems with their index in the data set (passes wrap around)."""
        out = []
        for _ in range(k):
            if self.cursor == len(self._order):
                self.epoch += 1
                self.cursor = 0
                self._order = self._permutation(self.epoch)
            index = self._order[self.cursor]
            self.cursor += 1
            out.append((index, self.problems[index]))
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "size": len(self.problems)}

    def load_state_dict(self, state: dict) -> None:
        if state["size"] != len(self.problems):
            raise ValueError(f"the checkpoint was made on a data set of {state['size']} problems, this one has "
                             f"{len(self.problems)}")
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._permutation(self.epoch)
