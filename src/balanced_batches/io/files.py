"""Writing files safely, the bottom of the package: every other module may use it.

A finished file only ever appears under its final name: it is written to a temporary name
beside it (`.NAME.part<pid>`), flushed to disk, then renamed. Clean-up removes only such
temporaries, never following a symbolic link.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import zlib
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeGuard

log = logging.getLogger(__name__)

TEMPORARY_SUFFIX = ".part"


def is_url(path: str) -> bool:
    """True for `scheme://` paths."""
    return "://" in path and not path.startswith("file://")


def adler32_of(path: Path) -> str:
    """adler32 of a file as 8 hex digits (the checksum XRootD reports)."""
    with path.open("rb") as handle:
        return adler32_of_chunks(iter(lambda: handle.read(1 << 22), b""))


def adler32_of_chunks(chunks: Iterable[bytes]) -> str:
    """adler32 of the bytes `chunks` hold one after another, as 8 hex digits."""
    value = 1
    for chunk in chunks:
        value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


@contextmanager
def atomic_path(final: Path, durable: bool = True) -> Iterator[Path]:
    """Yields a temporary path for `final`; renames it to `final` only on success.

    The temporary file has the final file's name inside a private directory beside
    it, because ROOT files record their own name: a rerun then writes the same bytes.
    `durable`: flushed to disk before the rename (files that can be made again quickly
    and are checked when read skip it).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    private = final.parent / temporary_name(final.name)
    try:
        private.mkdir()
    except FileExistsError:  # left by this process's earlier attempt, or not ours at all
        if private.is_symlink() or not private.is_dir():
            raise FileExistsError(
                errno.EEXIST, "in the way of a temporary directory", str(private)
            ) from None
    temporary = private / final.name
    try:
        yield temporary
        if durable:
            with temporary.open("rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
        private.rmdir()


_TEMPORARY = re.compile(r"^\.(?P<name>.+)" + re.escape(TEMPORARY_SUFFIX) + r"\d+$")


def temporary_name(name: str) -> str:
    """The name of a file's temporary twin in this process (`.NAME.part<pid>`)."""
    return f".{name}{TEMPORARY_SUFFIX}{os.getpid()}"


def remove_temporaries(directory: Path, names: Collection[str] | None = None) -> int:
    """Deletes what interrupted atomic writes of this tool left in a directory, and nothing
    else: for a file NAME of `names`, a private directory `.NAME.part<pid>` holding at most
    NAME (`atomic_path`), or a file `.NAME.part<pid>` (`write_json`). `names` None: any NAME,
    for directories this tool made itself. Symbolic links are never followed or removed,
    and a private directory holding anything else is left as it is."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or (names is not None and match["name"] not in names):
            continue
        if entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False):
            leftover = Path(entry.path) / match["name"]
            if leftover.is_file() and not leftover.is_symlink():
                leftover.unlink()
            try:
                os.rmdir(entry.path)
            except OSError:
                log.warning("%s holds files this tool did not write: left as it is", entry.path)
                continue
        elif entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
        else:
            continue
        removed += 1
    return removed


def write_json(path: Path, data: object, sort_keys: bool = True) -> None:
    """Writes JSON atomically; keys sorted with indent 4 as the original did, unless the
    order means something (type and process order in a configuration)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of this process's own: batch jobs running at once write the same file
    temporary = path.with_name(temporary_name(path.name))
    temporary.write_text(_indented_json(data, sort_keys))
    os.replace(temporary, path)


_SCALARS = (str, int, float, bool, type(None))


def _indented_json(data: object, sort_keys: bool) -> str:
    """`json.dumps(data, sort_keys=sort_keys, indent=4)`. Python's json (3.11 here) encodes
    indented JSON in pure Python; a dict of flat records (`counts.json`: 50,000 numbers for
    200 files) is built from its C encoder's one-line output instead, in a third of the time."""
    import json

    if not _flat_records(data):
        return json.dumps(data, sort_keys=sort_keys, indent=4)
    between_items = ",\n" + " " * 8  # of a record, where indent=4 puts them
    lines = []
    for name in sorted(data) if sort_keys else data:
        record = data[name]
        text = json.dumps(record, sort_keys=sort_keys, separators=(between_items, ": "))
        if record:
            text = "{\n" + " " * 8 + text[1:-1] + "\n    }"
        lines.append(f"    {json.dumps(name)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}"


def _flat_records(data: object) -> TypeGuard[dict[str, dict[str, object]]]:
    """A non-empty dict of dicts of scalars, every key a string."""
    return (
        isinstance(data, dict)
        and bool(data)
        and all(
            isinstance(name, str)
            and isinstance(record, dict)
            and all(isinstance(key, str) for key in record)
            and all(isinstance(value, _SCALARS) for value in record.values())
            for name, record in data.items()
        )
    )
