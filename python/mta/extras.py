"""The wheel's optional dependencies ("extras") and the check a command makes before it starts.

``pip install mta_kernels`` brings torch, numpy and tqdm: the ops and their references.
Each extra adds what a group of commands needs:

==============  ==========================================  ====================================
extra           installs                                    needed by
==============  ==========================================  ====================================
transformers    transformers, tokenizers, accelerate, gguf  ``mta.generate``, the demos, SmolLM2,
                                                            the tokenizer of ``mta sbt``
math            math-verify                                 answer checking (``mta.answers``,
                                                            ``mta sbt score|build``)
triton          triton                                      the GPU kernels
ray             ray                                         multi-machine evaluation / rollouts
all             all of the above
==============  ==========================================  ====================================

``setup.py`` reads :data:`EXTRAS` from this file (with ``runpy``: this module imports only the
standard library), so the declared extras and the check below cannot drift apart.
A command calls :func:`require` before it opens any output, so a missing dependency is one
line naming the extra to install, never a traceback after empty output files were created.
"""

from __future__ import annotations

import importlib

__all__ = ["EXTRAS", "MissingExtraError", "require", "requirements"]

#: extra name -> (pip requirements, import names that must load). The requirements are the
#: versions the test suite runs (transformers 5.23, math-verify 0.9.0, ray 2.60), bounded at the next
#: major version whose API may differ.
EXTRAS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "transformers": (("transformers>=5.23,<6", "tokenizers", "accelerate", "gguf"),
                     ("transformers", "tokenizers", "accelerate", "gguf")),
    "math": (("math-verify>=0.9.0,<0.10",), ("math_verify",)),
    "triton": (("triton",), ("triton",)),
    "ray": (("ray>=2.60,<3",), ("ray",)),
}

DIST = "mta_kernels"  # the distribution the extras belong to


class MissingExtraError(ImportError):
    """An optional dependency a command needs is not installed; the message names the extra."""


def requirements() -> dict[str, list[str]]:
    """``extras_require`` for setup.py: every extra, plus ``all``."""
    out = {name: list(reqs) for name, (reqs, _) in EXTRAS.items()}
    out["all"] = sorted({r for reqs in out.values() for r in reqs})
    return out


def _missing(module: str) -> str | None:
    """Why ``module`` cannot be imported, or None when it can."""
    try:
        importlib.import_module(module)
    except ImportError as exc:  # not installed, or installed but broken (a missing dependency)
        return str(exc) or f"no module named {module!r}"
    return None


def require(command: str, *extras: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise :class:`MissingExtraError` unless what ``extras`` provide can be imported.

    Parameters
    ----------
    command : str
        Who asks (``"mta sbt score"``), for the message.
    *extras : str
        Names in :data:`EXTRAS`.
    modules : tuple of str, optional
        Check only these import names of the extras (e.g. ``("tokenizers",)`` of
        ``transformers`` for a command that needs only the tokenizer); default: all of them.

    Raises
    ------
    MissingExtraError
        ``"<command> needs the '<extra>' extra (<module>: <why>): pip install 'mta_kernels[<extra>]'"``.
    ValueError
        An unknown extra name.
    """
    for extra in extras:
        if extra not in EXTRAS:
            raise ValueError(f"extras: unknown extra {extra!r} (known: {', '.join(EXTRAS)})")
        names = EXTRAS[extra][1]
        for module in names if modules is None else [m for m in names if m in modules]:
            why = _missing(module)
            if why is not None:
                raise MissingExtraError(
                    f"{command} needs the '{extra}' extra ({module} does not import: {why}); "
                    f"install it with: pip install '{DIST}[{extra}]'")
