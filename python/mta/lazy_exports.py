"""Package names imported on first use.

``mta`` builds its whole command line at start-up, which imports each sub-command's package
(``mta.eval``, ``mta.rl``). Their public names live in modules that import torch; importing
them eagerly made ``mta sbt score`` (which needs no torch) pay several seconds for it. A
package lists where each name lives and gets a module ``__getattr__`` (PEP 562) that imports
the home module the first time the name is used.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

__all__ = ["lazy_exports"]


def lazy_exports(package: str, homes: dict[str, str], namespace: dict) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``: ``homes`` maps a public name to the
    sub-module (relative to ``package``) that defines it; ``namespace`` is the package's
    ``globals()``, where a name is cached once imported."""

    def __getattr__(name: str):
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{homes[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(homes))

    return __getattr__, __dir__
