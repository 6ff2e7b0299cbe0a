"""The I/O limit: the least reading and writing any tool must do for the same job.

``read``: uproot reads every branch of every input file once (``tree.arrays()`` in chunks of
``--chunk-mb`` uncompressed), files spread over ``--workers`` processes, as ``run`` does.
``select``: the same, only the branches the region selection needs (the floor of ``count``).
``write``: the number of rows ``run`` writes, into the same number of files, with uproot
``mktree`` + ``extend`` (one call per file), the plan's compression and the outputs' branch set
(input branches, jagged groups as counted arrays, plus the five provenance branches), over
``--workers`` processes. uproot writes no ``std::vector<T>``: rows of such inputs are written
as counted arrays too, ``x_*`` branches of equal sizes sharing a counter ``nx``, as the same
rows from a counted-array input are. With ``--outputs LIST`` the rows are exactly those of
``run``'s output files listed (read back, then written again): the same values, so the same
compression ratio. Without it they are taken from the input files in list order (cycling),
shuffled. Getting the rows is not timed; only ``recreate`` + ``mktree`` + ``extend`` + close is.
``rewrite``: ``run``'s output files (``--outputs``) written again in their own format, every
branch with its type (``std::vector<T>`` stays ``std::vector<T>``), through ``io.ttree_writer``,
the writer ``run`` uses, at the same compression, one ``extend`` per file: the write any tool
must do for those outputs (uproot writes no ``std::vector``, and its counted arrays take more CPU
than ``io.ttree_writer``'s for the same bytes), so the limit in the outputs' format. Its processes
compress in one thread each (``OMP_NUM_THREADS=1``), as ``run``'s workers, one per core, do.

Times are measured inside the worker processes, after the process pool has started, and
written as JSON to ``--result``; the harness also measures the whole command from outside.

    python -m benchmarks.iolimit read --files flist.txt --workers 2 --result read.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from balanced_batches.io import ttree_writer
from balanced_batches.io.trees import branch_layout, local_reading
from balanced_batches.rows import BranchGroup, BranchLayout
from balanced_batches.writers import root_compression

PROVENANCE_TYPES = {
    "bb_process_key": np.int32,
    "bb_region": np.int32,
    "bb_source_file": np.int32,
    "bb_source_entry": np.int64,
    "bb_batch": np.int64,
}


def _read_file(task: tuple[str, str, list[str] | None, int]) -> tuple[int, float, int]:
    """(pid, seconds, entries) to read the branches of one file once."""
    path, tree_name, branches, chunk_bytes = task
    start = time.perf_counter()
    tree = uproot.open(path, **local_reading())[tree_name]  # the pipeline's way to read
    names = branches if branches is not None else list(tree.keys())
    library = "np" if branches is not None else "ak"
    entries = 0
    for chunk in tree.iterate(names, step_size=chunk_bytes, library=library):
        entries += len(next(iter(chunk.values()))) if library == "np" else len(chunk)
    return os.getpid(), time.perf_counter() - start, entries


@dataclass(frozen=True)
class WriteTask:
    """Output file `index`: `rows` rows taken from the inputs starting at global row `first`."""

    index: int
    rows: int
    first: int
    paths: tuple[str, ...]
    entries: tuple[int, ...]
    tree: str
    directory: str
    compression: str
    seed: int
    output: str | None = None  # rewrite this output file of `run` instead


def _source_rows(task: WriteTask) -> ak.Array:
    """The task's rows, read from the inputs (cycling), as one shuffled, packed array."""
    total = sum(task.entries)
    pieces = []
    position, remaining = task.first % total, task.rows
    bounds = np.cumsum((0, *task.entries))
    while remaining > 0:
        file_index = int(np.searchsorted(bounds, position, side="right") - 1)
        start = position - int(bounds[file_index])
        stop = min(task.entries[file_index], start + remaining)
        tree = uproot.open(task.paths[file_index])[task.tree]
        pieces.append(tree.arrays(entry_start=start, entry_stop=stop, library="ak"))
        remaining -= stop - start
        position = (position + stop - start) % total
    rows = ak.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    order = np.random.default_rng([task.seed, task.index]).permutation(len(rows))
    return ak.to_packed(rows[order])


def _grouped(rows: ak.Array, layout: BranchLayout) -> BranchLayout:
    """The layout with its lone jagged branches (std::vector inputs have no counters) grouped
    as a counted-array input groups them: `x_*` under one counter `nx` when their sizes agree,
    so that the limit writes as few counters as the same rows from counted arrays would."""
    by_outer: dict[str, list[str]] = {}
    for name in layout.singles:
        by_outer.setdefault(name.split("_", 1)[0], []).append(name)
    groups, singles = list(layout.groups), []
    taken = set(layout.scalars) | {g.counter for g in layout.groups}
    for outer, members in by_outer.items():
        counts = ak.num(rows[members[0]])
        same = all(ak.all(ak.num(rows[m]) == counts) for m in members[1:])
        if "_" in members[0] and same and "n" + outer not in taken:
            groups.append(BranchGroup(outer, "n" + outer, tuple(members)))
        else:
            singles.extend(members)
    return replace(layout, groups=tuple(groups), singles=tuple(singles), vectors=())


def _branches(rows: ak.Array, layout: BranchLayout, with_provenance: bool) -> dict[str, Any]:
    """Branch arrays for `extend`, grouped as the outputs are (counted arrays per group)."""
    branches: dict[str, Any] = {name: rows[name] for name in layout.scalars}
    for group in layout.groups:
        branches[group.outer] = ak.zip({group.inner(m): rows[m] for m in group.members})
    for name in layout.singles:
        branches[name] = rows[name]
    for name, dtype in PROVENANCE_TYPES.items():
        if with_provenance:
            branches[name] = np.arange(len(rows), dtype=dtype)
    return branches


def branch_type(values: ak.Array | np.ndarray) -> object:
    """The type `mktree` takes for a branch's values: a dtype (with the shape of a row for a
    fixed-size array per row, `x[3]/F`), or the list type of a jagged one."""
    if isinstance(values, np.ndarray):
        return values.dtype if values.ndim == 1 else np.dtype((values.dtype, values.shape[1:]))
    content = values.type.content
    if isinstance(content, ak.types.NumpyType):
        return np.dtype(content.primitive)
    return content


def uproot_mktree(output: Any, tree: str, branches: dict[str, Any], layout: BranchLayout) -> None:
    """uproot's `mktree` for `branches` as `_branches` or `rows.to_arrays` give them, every
    counted group's counter named as in `layout` (else `n<outer>`, uproot's own choice)."""
    counters = {group.outer: group.counter for group in layout.groups}
    output.mktree(
        tree,
        {name: branch_type(values) for name, values in branches.items()},
        counter_name=lambda outer: counters.get(outer, "n" + outer),
    )


def _write_file(task: WriteTask) -> tuple[int, float, int, int]:
    """(pid, seconds, rows, bytes) to write one output file; reading its rows is not timed."""
    if task.output is not None:
        tree = uproot.open(task.output)[task.tree]
        rows = tree.arrays(library="ak")
        layout = _grouped(rows, branch_layout(tree))
        branches = _branches(rows, layout, with_provenance=False)
    else:
        rows = _source_rows(task)
        layout = branch_layout(uproot.open(task.paths[0])[task.tree])
        layout = _grouped(rows, layout)
        branches = _branches(rows, layout, with_provenance=True)

    def write(output: Any) -> None:
        uproot_mktree(output, task.tree, branches, layout)
        output[task.tree].extend(branches)

    seconds, size = _timed_write(task, f"limit{task.index}.root", write)
    return os.getpid(), seconds, len(next(iter(branches.values()))), size


def _rewrite_file(task: WriteTask) -> tuple[int, float, int, int]:
    """(pid, seconds, rows, bytes) to write output file `task.output` again in its own format;
    reading it is not timed."""
    assert task.output is not None
    tree = uproot.open(task.output)[task.tree]
    types = ttree_writer.branch_types(tree)
    rows = tree.arrays(library="ak")
    branches = {branch.name: rows[branch.name] for branch in types}

    def write(output: Any) -> None:
        with ttree_writer.mktree(output, task.tree, types) as writer:
            writer.extend(branches)

    seconds, size = _timed_write(task, f"rewrite{task.index}.root", write)
    return os.getpid(), seconds, len(rows), size


def _timed_write(task: WriteTask, name: str, write: Callable[[Any], None]) -> tuple[float, int]:
    """(seconds, bytes) of `recreate` + `write(file)` + close of file `name` in the task's
    directory, at the task's compression; the file is deleted after."""
    path = Path(task.directory) / name
    start = time.perf_counter()
    with uproot.recreate(path, compression=root_compression(task.compression)) as output:
        write(output)
    seconds = time.perf_counter() - start
    size = path.stat().st_size
    path.unlink()
    return seconds, size


def _warm(_: int) -> int:
    time.sleep(0.05)  # long enough for every worker process to take one
    return os.getpid()


def run_pool(function: Callable[[Any], Any], tasks: Sequence[Any], workers: int) -> list[Any]:
    """Results of `function` over `tasks` on `workers` processes started before the clock."""
    if workers <= 1:
        return [function(task) for task in tasks]
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        list(pool.map(_warm, range(workers)))
        return list(pool.map(function, tasks, chunksize=1))


def _critical_path(results: list[tuple[Any, ...]]) -> float:
    """The largest total time of one worker process."""
    per_worker: dict[int, float] = {}
    for pid, seconds, *_ in results:
        per_worker[pid] = per_worker.get(pid, 0.0) + seconds
    return max(per_worker.values(), default=0.0)


def read_limit(
    paths: list[str], tree: str, workers: int, branches: list[str] | None, chunk_mb: int
) -> dict[str, Any]:
    """Reads every file once (all branches, or only `branches`); wall and per-worker times."""
    tasks = [(path, tree, branches, chunk_mb * 2**20) for path in paths]
    start = time.perf_counter()
    results = run_pool(_read_file, tasks, workers)
    wall = time.perf_counter() - start
    return {
        "seconds": wall,
        "critical_path_s": _critical_path(results),
        "entries": sum(r[2] for r in results),
        "files": len(paths),
        "bytes": sum(Path(p).stat().st_size for p in paths),
        "workers": workers,
    }


def write_limit(
    paths: list[str],
    tree: str,
    workers: int,
    rows: int,
    n_files: int,
    compression: str,
    directory: Path,
    outputs: list[str] | None = None,
    same_format: bool = False,
) -> dict[str, Any]:
    """Writes `rows` rows into `n_files` files (or rewrites `outputs`, in their own format if
    `same_format`); slowest worker's time."""
    directory.mkdir(parents=True, exist_ok=True)
    if same_format and not outputs:
        raise ValueError("rewrite needs the output files (--outputs)")
    if same_format:
        os.environ["OMP_NUM_THREADS"] = "1"  # one compression thread a process, as run's workers
    if outputs:
        tasks = [
            WriteTask(i, 0, 0, (), (), tree, str(directory), compression, 1, output)
            for i, output in enumerate(outputs)
        ]
    else:
        entries = tuple(int(uproot.open(p)[tree].num_entries) for p in paths)
        per_file = [rows // n_files + (1 if i < rows % n_files else 0) for i in range(n_files)]
        firsts = np.cumsum([0, *per_file[:-1]])
        tasks = [
            WriteTask(i, n, int(first), tuple(paths), entries, tree, str(directory), compression, 1)
            for i, (n, first) in enumerate(zip(per_file, firsts, strict=True))
            if n > 0
        ]
    start = time.perf_counter()
    results = run_pool(_rewrite_file if same_format else _write_file, tasks, workers)
    wall = time.perf_counter() - start
    return {
        "seconds": _critical_path(results),
        "wall_with_reading_s": wall,
        "rows": sum(r[2] for r in results),
        "files": len(tasks),
        "output_bytes": sum(r[3] for r in results),
        "workers": workers,
        "compression": compression,
        "source": "outputs" if outputs else "inputs",
        "writer": "io.ttree_writer, branch types kept" if same_format else "uproot, counted arrays",
    }


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: `read`, `select`, `write` or `rewrite`; the result goes to --result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.iolimit", description=__doc__)
    parser.add_argument("mode", choices=("read", "select", "write", "rewrite"))
    parser.add_argument("--files", type=Path, required=True, help="text file, one path a line")
    parser.add_argument("--tree", default="taus")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-mb", type=int, default=256)
    parser.add_argument("--branches", default="", help="comma-separated, for select")
    parser.add_argument("--rows", type=int, default=0, help="rows to write")
    parser.add_argument("--output-files", type=int, default=1)
    parser.add_argument("--compression", default="zstd:5")
    parser.add_argument("--directory", type=Path, default=Path("iolimit-out"))
    parser.add_argument(
        "--outputs", type=Path, default=None, help="rewrite these files (one path a line)"
    )
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    paths = _lines(args.files)
    if args.mode == "read":
        result = read_limit(paths, args.tree, args.workers, None, args.chunk_mb)
    elif args.mode == "select":
        branches = [name for name in args.branches.split(",") if name]
        result = read_limit(paths, args.tree, args.workers, branches, args.chunk_mb)
    else:
        result = write_limit(
            paths,
            args.tree,
            args.workers,
            args.rows,
            max(1, args.output_files),
            args.compression,
            args.directory,
            None if args.outputs is None else _lines(args.outputs),
            same_format=args.mode == "rewrite",
        )
    args.result.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
