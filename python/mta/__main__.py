"""``python -m mta``: the same as the ``mta`` command."""

from mta.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
