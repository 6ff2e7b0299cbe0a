"""The command line's entry point: `balanced-batches` and `python -m balanced_batches`.

A command that works on local worker processes gains from starting the server they fork from
(`engines.worker_server`) as early as it can: the server's imports then overlap the CLI's own
(typer, rich, the configuration: 0.25 s). So this module reads the command line for that hint
before it imports the CLI; the command decides again once typer has parsed it, and stops the
server if it needs none. This module stays light: it runs before the server starts.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .stages import Command

# options of `count` and `run` (`cli.py`) with which they start no local workers
NO_LOCAL_WORKERS = ("--scheduler", "--cluster", "--help")
WORKERS = ("--workers", "--parallel")


def local_worker_command(argv: Sequence[str]) -> Command | None:
    """The command (`count`, `run`) that `argv` will likely run on local workers, or None:
    not when it names a scheduler or a cluster, asks for help or for one worker."""
    from .stages import WORKER_MODULES

    arguments = list(argv)
    command = next((name for name in WORKER_MODULES if arguments[:1] == [name]), None)
    if command is None:
        return None
    options = arguments[1:]
    for index, option in enumerate(options):
        name, _, value = option.partition("=")
        if name in NO_LOCAL_WORKERS:
            return None
        if name in WORKERS:
            value = value or (options[index + 1] if index + 1 < len(options) else "")
            if _is_one(value):
                return None
    return command


def _is_one(text: str) -> bool:
    """Whether an option's value reads as the integer 1, as typer reads it."""
    try:
        return int(text) == 1
    except ValueError:
        return False


def main() -> None:
    """Starts local workers' server if the command will likely need it, then the CLI."""
    from .engines import worker_server
    from .stages import WORKER_MODULES

    command = local_worker_command(sys.argv[1:])
    if command is not None:
        worker_server.start(WORKER_MODULES[command])
    try:
        from .cli import main as cli_main

        cli_main()
    finally:
        worker_server.stop()  # started on a hint that a user error or one worker proved wrong


if __name__ == "__main__":
    main()
