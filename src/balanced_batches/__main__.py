"""The command line's entry point: `balanced-batches` and `python -m balanced_batches`."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
