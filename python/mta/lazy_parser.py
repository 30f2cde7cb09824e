"""An ``argparse`` sub-command parser that adds its arguments on first use.

The demos' options live beside their code (``decode_demo.add_arguments``), which imports
torch, the kernels and the generation engine — several seconds on a small machine. Building
every sub-command's options eagerly made ``mta sbt score`` (which needs none of that) pay
for them at every start. A :class:`LazyParser` calls its ``populate`` callback only when it
parses or prints its own help, so a command imports only what it runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["LazyParser"]


class LazyParser(argparse.ArgumentParser):
    """``ArgumentParser(..., populate=fn)``: ``fn(self)`` adds the arguments, once, on first
    use. Pass it as ``add_subparsers(parser_class=LazyParser)``; sub-commands of a
    LazyParser are LazyParsers too (argparse's default ``parser_class`` is the parent's)."""

    def __init__(self, *args, populate: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._populate = populate

    def _ready(self) -> None:
        populate, self._populate = self._populate, None
        if populate is not None:
            populate(self)

    def parse_known_args(self, args=None, namespace=None):
        self._ready()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._ready()
        return super().format_help()

    def format_usage(self) -> str:
        self._ready()
        return super().format_usage()
