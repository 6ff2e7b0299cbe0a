"""Reaching input trees: local paths or any URL uproot understands (`root://` goes through
fsspec-xrootd, with the client timeout and retries of `stores`), and classifying their
branches.

uproot is imported where a tree is opened or classified, not with this module: `count`'s
own process only stats files and writes JSON, and uproot with awkward is 0.2 s of its
start-up, before the first file reaches a worker. `stores` (fsspec) likewise.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import InputFileError
from ..rows import BranchGroup, BranchLayout
from .files import is_url


def local_reading() -> dict[str, Any]:
    """`uproot.open` options for local files: read in the calling thread. uproot's default
    source for them (fsspec) hands every read to an event-loop thread and on to a worker
    thread; in a Dask worker, whose own event loop competes for the GIL, those hand-offs made
    a read unit 25 % slower (BENCHMARKS.md)."""
    import uproot

    return {"handler": uproot.source.file.MultithreadedFileSource, "use_threads": False}


def file_stat(path: str) -> tuple[int, float]:
    """(size in bytes, modification time) of an input file (remote: `stores.stat`)."""
    try:
        if is_url(path):
            from . import stores

            return stores.stat(path)
        stat = os.stat(path.removeprefix("file://"))
        return stat.st_size, stat.st_mtime
    except FileNotFoundError as err:
        raise InputFileError(f"{path}: file not found") from err
    except OSError as err:
        raise InputFileError(f"{path}: cannot access: {err}") from err


def open_tree(path: str, tree_name: str) -> Any:
    """The input tree; a missing file, corrupt file or missing tree is a one-line InputFileError.

    Remote files are opened with a client timeout, and transient failures (lost
    connections, timeouts) are retried with backoff (`stores.retrying`).
    """
    from . import stores

    if "://" not in path:
        with contextlib.suppress(OSError):  # a missing file: uproot says so below
            if os.stat(path).st_size == 0:
                raise InputFileError(f"{path}: empty file (0 bytes)")
    options = local_reading() if "://" not in path else stores.open_options(path)
    return stores.retrying(lambda: _open_tree(path, tree_name, options), path)


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

    from .stores import is_missing

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
    from .stores import short

    return f"{type(err).__name__}: {short(err)}"


def branch_layout(tree: Any) -> BranchLayout:
    """Classifies the branches of a tree, with the type each has (`BranchLayout.types`), and
    those whose type cannot be copied (`BranchLayout.uncopyable`)."""
    import uproot

    scalars: list[str] = []
    counted: dict[str, list[str]] = {}
    singles: list[str] = []
    vectors: list[str] = []
    types: dict[str, str] = {}
    uncopyable: dict[str, str] = {}
    for branch in tree.values():
        interpretation = branch.interpretation
        if isinstance(interpretation, uproot.AsDtype):  # one value, or a fixed-size array
            scalars.append(branch.name)
            types[branch.name] = branch.typename  # float, float[3], int32_t[2][2]
            continue
        if (
            isinstance(interpretation, uproot.AsJagged)
            and isinstance(interpretation.content, uproot.AsDtype)
            and interpretation.content.from_dtype.shape == ()  # not x[n][3]
        ):
            leaves = branch.member("fLeaves")
            leaf_count = leaves[0].member("fLeafCount") if leaves else None
            if leaf_count is not None:
                counter = leaf_count.member("fName")
                counted.setdefault(counter, []).append(branch.name)
                types[branch.name] = f"{branch.typename.removesuffix('[]')}[{counter}]"
            else:
                singles.append(branch.name)
                types[branch.name] = branch.typename
                if branch.typename.startswith("std::vector<"):
                    vectors.append(branch.name)
                    # ROOT's class name tells vector<long> from vector<Long64_t>; uproot's
                    # type name does not
                    class_name = branch.member("fClassName", none_if_missing=True)
                    if class_name:
                        types[branch.name] = f"std::{str(class_name).removeprefix('std::')}"
            continue
        uncopyable[branch.name] = branch.typename
    groups: list[BranchGroup] = []
    counters = [name for name in counted if name in scalars]
    for counter, members in counted.items():
        outer = counter[1:] if counter.startswith("n") else counter
        if outer and all(member.startswith(outer + "_") for member in members):
            groups.append(BranchGroup(outer, counter, tuple(members)))
        else:
            singles.extend(members)
    scalars = [name for name in scalars if name not in counters]
    return BranchLayout(
        tuple(scalars),
        tuple(groups),
        tuple(singles),
        tuple(counters),
        tuple(vectors),
        tuple(types.items()),
        tuple(uncopyable.items()),
    )
