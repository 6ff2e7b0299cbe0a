"""Reaching input trees and writing files safely.

Paths may be local or any URL uproot understands (`root://` goes through fsspec-xrootd).
A finished file only ever appears under its final name: it is written to a
temporary name beside it, flushed to disk, then renamed.

uproot is imported where a tree is opened or classified, not with this module: `count`'s
own process only stats files and writes JSON, and uproot with awkward is 0.2 s of its
start-up, before the first file reaches a worker.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import zlib
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from .errors import InputFileError

log = logging.getLogger(__name__)
TEMPORARY_SUFFIX = ".part"


def local_reading() -> dict[str, Any]:
    """`uproot.open` options for local files: read in the calling thread. uproot's default
    source for them (fsspec) hands every read to an event-loop thread and on to a worker
    thread; in a Dask worker, whose own event loop competes for the GIL, those hand-offs made
    a read unit 25 % slower (BENCHMARKS.md)."""
    import uproot

    return {"handler": uproot.source.file.MultithreadedFileSource, "use_threads": False}


def is_url(path: str) -> bool:
    """True for `scheme://` paths."""
    return "://" in path and not path.startswith("file://")


def file_stat(path: str) -> tuple[int, float]:
    """(size in bytes, modification time) of an input file (remote: `remote.stat`)."""
    try:
        if is_url(path):
            from . import remote

            return remote.stat(path)
        stat = os.stat(path.removeprefix("file://"))
        return stat.st_size, stat.st_mtime
    except FileNotFoundError as err:
        raise InputFileError(f"{path}: file not found") from err
    except OSError as err:
        raise InputFileError(f"{path}: cannot access: {err}") from err


def open_tree(path: str, tree_name: str) -> Any:
    """The input tree; a missing file, corrupt file or missing tree is a one-line InputFileError.

    Remote files are opened with a client timeout, and transient failures (lost
    connections, timeouts) are retried with backoff (`remote.retrying`).
    """
    from . import remote

    if "://" not in path:
        with contextlib.suppress(OSError):  # a missing file: uproot says so below
            if os.stat(path).st_size == 0:
                raise InputFileError(f"{path}: empty file (0 bytes)")
    options = local_reading() if "://" not in path else remote.open_options(path)
    return remote.retrying(lambda: _open_tree(path, tree_name, options), path)


@contextmanager
def opened_tree(path: str, tree_name: str) -> Iterator[Any]:
    """`open_tree`, its file closed at the end (local files are plain file objects)."""
    tree = open_tree(path, tree_name)
    try:
        yield tree
    finally:
        tree.file.close()


def _open_tree(path: str, tree_name: str, options: dict[str, Any]) -> Any:
    """One attempt of `open_tree`; `options` go to `uproot.open`."""
    import uproot

    from .remote import is_missing

    try:
        # no array cache: every branch is read once, and a cache would keep up to
        # 100 MB per file alive until the garbage collector breaks uproot's cycles
        handle = uproot.open(path, array_cache=None, **options)
    except FileNotFoundError as err:
        raise InputFileError(f"{path}: file not found") from err
    except Exception as err:  # uproot raises many kinds for corrupt or non-ROOT files
        if is_url(path) and is_missing(err):
            raise InputFileError(f"{path}: file not found") from err
        raise InputFileError(f"{path}: not a readable ROOT file ({error_summary(err)})") from err
    try:
        return _checked_tree(handle, path, tree_name)
    except BaseException:
        handle.file.close()
        raise


def _checked_tree(handle: Any, path: str, tree_name: str) -> Any:
    """The tree of an open file; a missing tree or a truncated file is an InputFileError."""
    import uproot

    try:
        tree = handle[tree_name]
    except Exception as err:
        raise InputFileError(f"{path}: no tree {tree_name!r} in file") from err
    if not isinstance(tree, uproot.behaviors.TTree.TTree):
        raise InputFileError(f"{path}: {tree_name!r} is not a TTree")
    expected, found = handle.file.fEND, _size_of_source(handle.file)
    if found is not None and found < expected:
        raise InputFileError(f"{path}: truncated ({found} of {expected} bytes)")
    return tree


def _size_of_source(file: Any) -> int | None:
    """Bytes uproot can reach in a file, if its source knows."""
    try:
        size = file.source.num_bytes
    except Exception:  # some remote sources cannot tell
        return None
    return None if size is None else int(size)


def unreadable(path: str, err: BaseException) -> str:
    """One line saying that a file could not be read, and why."""
    return f"{path}: cannot read ({error_summary(err)})"


def error_summary(err: BaseException) -> str:
    """`Type: first line of the innermost message`, for one-line error messages."""
    from .remote import short

    return f"{type(err).__name__}: {short(err)}"


@dataclass(frozen=True)
class BranchGroup:
    """Counted-array branches sharing one counter, written back as one record (`outer_inner`)."""

    outer: str
    counter: str
    members: tuple[str, ...]

    def inner(self, branch: str) -> str:
        """The member's field name inside the record."""
        return branch[len(self.outer) + 1 :]


@dataclass(frozen=True)
class BranchLayout:
    """How a tree's branches map onto arrays: scalars, counted groups, lone jagged branches."""

    scalars: tuple[str, ...]
    groups: tuple[BranchGroup, ...]
    singles: tuple[str, ...]
    counters: tuple[str, ...]

    @property
    def data_branches(self) -> tuple[str, ...]:
        """Every branch holding data, counters excluded (writers recreate those)."""
        members = tuple(name for group in self.groups for name in group.members)
        return self.scalars + members + self.singles


def branch_layout(tree: Any, path: str) -> BranchLayout:
    """Classifies the branches of a tree; rejects types that cannot be copied."""
    import uproot

    scalars: list[str] = []
    counted: dict[str, list[str]] = {}
    singles: list[str] = []
    for branch in tree.values():
        interpretation = branch.interpretation
        if isinstance(interpretation, uproot.AsDtype) and interpretation.from_dtype.shape == ():
            scalars.append(branch.name)
            continue
        if isinstance(interpretation, uproot.AsJagged) and isinstance(
            interpretation.content, uproot.AsDtype
        ):
            leaves = branch.member("fLeaves")
            leaf_count = leaves[0].member("fLeafCount") if leaves else None
            if leaf_count is not None:
                counted.setdefault(leaf_count.member("fName"), []).append(branch.name)
            else:
                singles.append(branch.name)
            continue
        raise InputFileError(
            f"{path}: branch {branch.name!r} has type {branch.typename!r}, which cannot be copied"
        )
    groups: list[BranchGroup] = []
    counters = [name for name in counted if name in scalars]
    for counter, members in counted.items():
        outer = counter[1:] if counter.startswith("n") else counter
        if outer and all(member.startswith(outer + "_") for member in members):
            groups.append(BranchGroup(outer, counter, tuple(members)))
        else:
            singles.extend(members)
    scalars = [name for name in scalars if name not in counters]
    return BranchLayout(tuple(scalars), tuple(groups), tuple(singles), tuple(counters))


def adler32_of(path: Path) -> str:
    """adler32 of a file as 8 hex digits (the checksum XRootD reports)."""
    value = 1
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
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


def layout_to_json(layout: BranchLayout) -> dict[str, Any]:
    """A branch layout as plain JSON data."""
    return {
        "scalars": list(layout.scalars),
        "groups": [
            {"outer": g.outer, "counter": g.counter, "members": list(g.members)}
            for g in layout.groups
        ],
        "singles": list(layout.singles),
        "counters": list(layout.counters),
    }


def layout_from_json(data: dict[str, Any]) -> BranchLayout:
    """Inverse of `layout_to_json`."""
    return BranchLayout(
        scalars=tuple(data["scalars"]),
        groups=tuple(
            BranchGroup(g["outer"], g["counter"], tuple(g["members"])) for g in data["groups"]
        ),
        singles=tuple(data["singles"]),
        counters=tuple(data["counters"]),
    )
