"""The TTree writer (`io.ttree_writer`), std::vector and counted, against uproot's, alternated.

    .venv/bin/python -m benchmarks.vector_writer                       # bigfiles, 60,000 rows
    .venv/bin/python -m benchmarks.vector_writer --size medium --rows 25590 --pairs 9
    .venv/bin/python -m benchmarks.vector_writer --profile             # + where the time goes
    .venv/bin/python -m benchmarks.vector_writer --profile --compressions zstd:1,zstd:3,lz4:4
    .venv/bin/python -m benchmarks.vector_writer --commit HEAD         # src/ of a commit

The same rows are written three ways, each as a write unit of `run` writes a file (temporary
name, fsync, rename; the plan's compression, `zstd:5` by default; `WRITE_CHUNK_ROWS` rows per
`extend`):

- **vector**: the rows as a `std::vector<T>` input gives them (every jagged branch its own
  collection, `BranchLayout.vectors` naming them all), through `writers.write_ttree`, i.e.
  `io.ttree_writer`: every jagged branch a `std::vector<T>` branch, no counters;
- **counted**: the rows as a counted-array input gives them (the members of `pfCand_*`,
  `ele_*`, `muon_*` share one counter each), through `writers.write_ttree` too: counted arrays
  written by `io.ttree_writer`, what `run` writes for counted-array inputs;
- **uproot**: the same counted rows written by uproot's `mktree` + `extend` (`write_with_uproot`,
  what `write_ttree` did for counted-array inputs until `io.ttree_writer` replaced it): the
  writer the `std::vector` writer is measured against.

Rows: the first `--rows` entries of the dataset of `--size` (counted arrays; made by
`datasets.ensure_dataset` if missing), read in list order, every branch, then shuffled
(seeded) into fresh buffers as a write unit's `take` leaves them, plus the five provenance
columns of the outputs. Both arms get the same values; the vector arm's collections share
the offsets array of their group.

Order: one untimed warm-up write of each arm, after which the files are read back with
uproot and compared branch by branch with the rows (every value); then `--pairs` rounds, the
arm that goes first rotating from round to round (vector, counted, uproot / counted, uproot,
vector / ...). Each write is timed in this process: wall (`perf_counter`) and CPU
(`process_time`) of the write. Reported: medians per arm, vector/uproot and counted/uproot per
round (median, min-max and a 95 % bootstrap interval of the median), MB/s of uncompressed
payload (the rows' values: flat columns and jagged contents, the same bytes in every arm), the
output sizes and the trees' uncompressed serialised bytes (fTotBytes: values plus ROOT's
framing, the 10-byte header of each vector entry or the counters). Results:
``<out>/results/vector_writer-<size>-<rows>.json`` and a Markdown table on stdout.

`--profile`: afterwards, the jagged branches' basket payloads as each layout hands them to the
compressor (vector: every entry framed by a 10-byte header; counted: the bare values, whichever
writer), framed and compressed alone (`compression_costs`, no profiler; `--compressions` adds
other settings), then one write of each arm under cProfile (CPU time); the functions with the
most time of their own and below them are printed and kept in the JSON.

With `--commit REV`, `src/` of that commit is exported (`executor_engine.export_src`) and the
benchmark runs again in a subprocess with it first on PYTHONPATH: a working tree being edited
meanwhile does not change what is measured.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import SIZES, ensure_dataset, input_paths
from .executor_engine import REPOSITORY, _working_tree_commit, bootstrap_interval, export_src
from .iolimit import uproot_mktree

ARMS = ("vector", "counted", "uproot")
LAYOUTS = ("vector", "counted")  # how the jagged baskets' payloads differ (`jagged_baskets`)
RATIOS = (("vector", "uproot"), ("counted", "uproot"))  # numerator, denominator, per round
MB = 2.0**20
PROVENANCE_DTYPES = {  # as the outputs hold them (stages.units.PROVENANCE)
    "bb_process_key": np.int32,
    "bb_region": np.int32,
    "bb_source_file": np.int32,
    "bb_source_entry": np.int64,
    "bb_batch": np.int64,
}


def load_rows(paths: Sequence[str], rows: int, seed: int) -> tuple[Any, Any, dict[str, int]]:
    """The first `rows` entries of `paths` as a shuffled RowBlock with the provenance columns,
    its (counted-array) branch layout, and where they came from."""
    from balanced_batches.io.trees import branch_layout, opened_tree
    from balanced_batches.rows import concatenate, from_arrays

    blocks, layout, remaining, files = [], None, rows, 0
    for path in paths:
        if remaining <= 0:
            break
        with opened_tree(path, "taus") as tree:
            layout = layout or branch_layout(tree)
            stop = min(remaining, int(tree.num_entries))
            arrays = tree.arrays(library="ak", entry_stop=stop)
            blocks.append(from_arrays({name: arrays[name] for name in arrays.fields}, layout))
        remaining -= stop
        files += 1
    if layout is None or remaining > 0:
        raise SystemExit(f"the dataset holds fewer than {rows} entries")
    block = concatenate(blocks)
    shuffled = block.take(np.random.default_rng(seed).permutation(block.length))
    provenance = {
        name: np.arange(shuffled.length, dtype=dtype) % 1000
        for name, dtype in PROVENANCE_DTYPES.items()
    }
    return shuffled.with_flat(provenance), layout, {"files": files, "rows": block.length}


def as_vector_input(block: Any, layout: Any) -> tuple[Any, Any]:
    """The same rows and layout as a `std::vector<T>` input gives them: every jagged branch a
    collection of its own (sharing its group's offsets), all named in `vectors`."""
    from balanced_batches.rows import BranchLayout, Jagged, RowBlock

    jagged = {}
    for collection in block.jagged.values():
        for name, content in collection.contents.items():
            jagged[name] = Jagged(collection.offsets, {name: content})
    names = tuple(name for group in layout.groups for name in group.members) + layout.singles
    vector_layout = BranchLayout(layout.scalars, (), names, (), names)
    return RowBlock(block.length, block.flat, jagged), vector_layout


def payload_bytes(block: Any) -> int:
    """Bytes of the rows' values: flat columns and jagged contents (no offsets, no framing)."""
    flat = sum(values.nbytes for values in block.flat.values())
    jagged = sum(
        int(collection.offsets[-1]) * content.dtype.itemsize
        for collection in block.jagged.values()
        for content in collection.contents.values()
    )
    return int(flat + jagged)


def write_with_uproot(
    path: Path, rows: Any, layout: Any, extra: tuple[str, ...], spec: Any
) -> None:
    """Counted-array rows written as `writers.write_ttree` wrote them with uproot's `mktree` +
    `extend` (awkward arrays of the groups' records, `WRITE_CHUNK_ROWS` rows per `extend`)."""
    from balanced_batches.io.files import atomic_path
    from balanced_batches.rows import to_arrays
    from balanced_batches.writers import (
        PROVENANCE_OBJECT,
        WRITE_CHUNK_ROWS,
        _reproducible_root_file,
    )

    branches = to_arrays(rows, layout) | {name: rows.column(name) for name in extra}
    with atomic_path(path) as temporary, _reproducible_root_file(temporary, spec) as output:
        uproot_mktree(output, spec.tree, branches, layout)
        for start in range(0, max(rows.length, 1), WRITE_CHUNK_ROWS):
            chunk = {
                name: values[start : start + WRITE_CHUNK_ROWS] for name, values in branches.items()
            }
            output[spec.tree].extend(chunk)
        output[PROVENANCE_OBJECT] = spec.provenance


class Arms:
    """The three ways to write the rows."""

    def __init__(self, block: Any, layout: Any, compression: str, directory: Path) -> None:
        from balanced_batches.writers import OutputSpec

        self.directory = directory
        self.spec = OutputSpec("root", compression, "taus", "{}", "vector-writer-benchmark")
        self.extra = tuple(PROVENANCE_DTYPES)
        vector_block, vector_layout = as_vector_input(block, layout)
        self.inputs = {
            "vector": (vector_block, vector_layout),
            "counted": (block, layout),
            "uproot": (block, layout),
        }

    def path(self, arm: str) -> Path:
        """Where `arm` writes."""
        return self.directory / f"{arm}.root"

    def _call(self, arm: str) -> None:
        from balanced_batches.writers import write_ttree

        rows, layout = self.inputs[arm]
        write = write_with_uproot if arm == "uproot" else write_ttree
        write(self.path(arm), rows, layout, self.extra, self.spec)

    def write(self, arm: str) -> dict[str, float]:
        """One write of `arm`: wall and CPU seconds, the file's size."""
        path = self.path(arm)
        path.unlink(missing_ok=True)
        wall, cpu = time.perf_counter(), time.process_time()
        self._call(arm)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"wall_s": wall, "cpu_s": cpu, "bytes": path.stat().st_size}

    def profile(self, arm: str, top: int) -> dict[str, Any]:
        """One write of `arm` under cProfile: the top functions by own and cumulative time."""
        self.path(arm).unlink(missing_ok=True)
        profiler = cProfile.Profile(time.process_time)  # CPU time: steadier on a shared machine
        profiler.enable()
        self._call(arm)
        profiler.disable()
        stats = pstats.Stats(profiler)
        total = stats.total_tt  # type: ignore[attr-defined]
        result: dict[str, Any] = {"total_s": total}
        for key, label in (("tottime", "own"), ("cumulative", "cumulative")):
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats(key).print_stats(top)
            result[label] = text.getvalue()
        return result


def jagged_baskets(block: Any) -> dict[str, Any]:
    """Where the two arms' bytes differ, without a profiler: the jagged branches' basket
    payloads (one per `WRITE_CHUNK_ROWS` rows, as `write_ttree` makes them) as each arm hands
    them to the compressor: counted, the big-endian values and the entry offsets; vector,
    every entry framed (`_ttree_cascade.vector_entries`) and the entry offsets. Times: framing
    all of them, and compressing each way (best of 3); CPU seconds."""
    from balanced_batches.io._ttree_cascade import vector_entries
    from balanced_batches.writers import WRITE_CHUNK_ROWS

    payloads: dict[str, list[bytes]] = {"counted": [], "vector": []}
    framing = 0.0
    for collection in block.jagged.values():
        for content in collection.contents.values():
            big_endian = content.astype(content.dtype.newbyteorder(">"))
            for start in range(0, block.length, WRITE_CHUNK_ROWS):
                offsets = collection.offsets[start : start + WRITE_CHUNK_ROWS + 1]
                values = big_endian[offsets[0] : offsets[-1]]
                offsets = offsets - offsets[0]
                payloads["counted"].append(values.tobytes() + offsets[:-1].astype(">i4").tobytes())
                began = time.process_time()
                framed, starts = vector_entries(offsets, values)
                framing += time.process_time() - began
                payloads["vector"].append(framed.tobytes() + starts[:-1].astype(">i4").tobytes())
    return {"payloads": payloads, "framing_s": framing}


def compression_costs(block: Any, compression: str) -> dict[str, Any]:
    """`jagged_baskets` compressed with the plan's compression: seconds and bytes per arm."""
    from balanced_batches.writers import root_compression

    compressor = root_compression(compression)
    baskets = jagged_baskets(block)
    result: dict[str, Any] = {"framing_s": baskets["framing_s"]}
    for arm in LAYOUTS:
        data = baskets["payloads"][arm]
        best, compressed = float("inf"), 0
        for _ in range(3):
            began = time.process_time()
            compressed = sum(len(compressor.compress(d)) for d in data) if compressor else 0
            best = min(best, time.process_time() - began)
        result[arm] = {
            "baskets": len(data),
            "bytes": sum(len(d) for d in data),
            "compressed_bytes": compressed,
            "compress_s": best,
        }
    return result


def tree_facts(path: Path) -> dict[str, int]:
    """Branches and uncompressed/compressed bytes of a written tree (its fTotBytes/fZipBytes)."""
    import uproot

    with uproot.open(path) as file:
        tree = file["taus"]
        return {
            "branches": len(tree.keys()),
            "tot_bytes": int(tree.member("fTotBytes")),
            "zip_bytes": int(tree.member("fZipBytes")),
        }


def read_back_equal(arms: Arms, block: Any) -> dict[str, Any]:
    """Every arm's file read back with uproot holds the rows, every branch, every value."""
    import awkward as ak
    import uproot

    from balanced_batches.rows import column_arrays

    expected = column_arrays(block)
    result: dict[str, Any] = {}
    for arm in ARMS:
        with uproot.open(arms.path(arm)) as file:
            tree = file["taus"]
            arrays = tree.arrays(list(expected), library="ak")
            different = [
                name for name in expected if not ak.array_equal(arrays[name], expected[name])
            ]
            typenames = {tree[name].typename for name in expected if name in tree}
        result[arm] = {"branches_compared": len(expected), "different": different}
        result[arm]["jagged_types"] = sorted(t for t in typenames if "[]" in t or "vector" in t)
        if different or tree.num_entries != block.length:
            raise SystemExit(f"{arm}: read back differs from the rows: {different[:5]}")
    return result


def summarise(records: list[dict[str, Any]], payload: int) -> dict[str, Any]:
    """Medians per arm, `RATIOS` per round, MB/s of payload."""
    summary: dict[str, Any] = {}
    for key in ("wall_s", "cpu_s"):
        per_arm = {arm: [r[arm][key] for r in records] for arm in ARMS}
        summary[key] = {
            **{arm: [round(v, 4) for v in values] for arm, values in per_arm.items()},
            **{f"median_{arm}": statistics.median(values) for arm, values in per_arm.items()},
        }
        for top, bottom in RATIOS:
            ratios = [r[top][key] / r[bottom][key] for r in records]
            low, high = bootstrap_interval(ratios)
            summary[key][f"{top}/{bottom}"] = {
                "ratios": [round(v, 4) for v in ratios],
                "median": statistics.median(ratios),
                "min": min(ratios),
                "max": max(ratios),
                "interval_95": (low, high),
                "rounds_faster": sum(v < 1 for v in ratios),
            }
    for arm in ARMS:
        summary[f"payload_mb_per_s_{arm}"] = payload / MB / summary["wall_s"][f"median_{arm}"]
    return summary


def table(results: dict[str, Any]) -> str:
    """Markdown: the per-arm medians, then the per-round ratios."""
    s, sizes = results["summary"], results["outputs"]
    lines = [
        f"{results['rows']:,} rows of `{results['dataset']}` ({results['payload_mb']:.1f} MB of "
        f"values), `{results['compression']}`, {results['pairs']} rounds, src "
        f"{results['commit']}, load {results['load_start'][0]:.2f} → {results['load_end'][0]:.2f}",
        "",
        "| | vector (io.ttree_writer) | counted (io.ttree_writer) | counted (uproot) |",
        "|---|---|---|---|",
    ]
    for key, label in (("wall_s", "wall s, median"), ("cpu_s", "CPU s, median")):
        lines.append(
            f"| {label} | " + " | ".join(f"{s[key][f'median_{a}']:.3f}" for a in ARMS) + " |"
        )
    lines.append(
        "| payload MB/s (wall) | "
        + " | ".join(f"{s[f'payload_mb_per_s_{a}']:.1f}" for a in ARMS)
        + " |"
    )
    lines.append(
        "| output MB (uncompressed fTotBytes MB) | "
        + " | ".join(
            f"{sizes[arm]['bytes'] / MB:.1f} ({sizes[arm]['tot_bytes'] / MB:.1f})" for arm in ARMS
        )
        + " |"
    )
    lines.append("| branches | " + " | ".join(str(sizes[a]["branches"]) for a in ARMS) + " |")
    lines += ["", "| per round | median (min-max) [95 %] | faster |", "|---|---|---|"]
    for key, label in (("wall_s", "wall"), ("cpu_s", "CPU")):
        for top, bottom in RATIOS:
            e = s[key][f"{top}/{bottom}"]
            low, high = e["interval_95"]
            lines.append(
                f"| {top}/{bottom}, {label} | **{e['median']:.3f}** ({e['min']:.3f}-"
                f"{e['max']:.3f}) [{low:.3f}, {high:.3f}] | {e['rounds_faster']}/"
                f"{results['pairs']} |"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.vector_writer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", default="bigfiles", choices=tuple(SIZES))
    parser.add_argument("--rows", type=int, default=60_000, help="entries written per file")
    parser.add_argument("--pairs", type=int, default=9, help="rounds of the 3 arms (>= 3)")
    parser.add_argument("--compression", default="zstd:5", help="the plan's default: zstd:5")
    parser.add_argument("--seed", type=int, default=1, help="the rows' shuffle")
    parser.add_argument("--workers", type=int, default=2, help="to generate a missing dataset")
    parser.add_argument("--out", type=Path, default=Path("bench-data"))
    parser.add_argument("--profile", action="store_true", help="then cProfile one write of each")
    parser.add_argument("--top", type=int, default=25, help="functions shown per profile")
    parser.add_argument(
        "--compressions",
        default="",
        help="with --profile: also compress the jagged baskets with each of these "
        "(comma-separated, e.g. zstd:1,zstd:3,lz4:4)",
    )
    parser.add_argument("--commit", default=None, help="measure src/ of this commit")
    args = parser.parse_args(argv)
    if args.pairs < 3:
        parser.error("--pairs: at least 3")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Runs the benchmark; returns (and writes) the results."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    out = args.out.resolve()
    if args.commit:
        src, commit = export_src(args.commit, out / "work" / "src-export")
        rest = [a for i, a in enumerate(argv) if not _is_commit_option(argv, i)]
        env = dict(os.environ, BB_BENCH_COMMIT=commit)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(src), str(REPOSITORY), env.get("PYTHONPATH")) if p
        )
        command = [sys.executable, "-m", "benchmarks.vector_writer", *rest, "--out", str(out)]
        subprocess.run(command, env=env, cwd=REPOSITORY, check=True)
        return None
    import balanced_batches

    dataset = ensure_dataset(SIZES[args.size], out, args.workers)
    started = time.time()
    load_start = os.getloadavg()
    block, layout, source = load_rows(input_paths(dataset), args.rows, args.seed)
    directory = out / "work" / "vector-writer"
    directory.mkdir(parents=True, exist_ok=True)
    arms = Arms(block, layout, args.compression, directory)
    for arm in ARMS:  # warm-up, then the sanity check on its files
        arms.write(arm)
    checked = read_back_equal(arms, block)
    records: list[dict[str, Any]] = []
    for index in range(args.pairs):
        order = ARMS[index % len(ARMS) :] + ARMS[: index % len(ARMS)]
        record: dict[str, Any] = {"pair": index, "first": order[0]}
        for arm in order:
            record[arm] = arms.write(arm)
        records.append(record)
        print(
            f"round {index}: "
            + ", ".join(
                f"{arm} {record[arm]['wall_s']:.3f} s (CPU {record[arm]['cpu_s']:.3f})"
                for arm in ARMS
            )
            + f", load {os.getloadavg()[0]:.2f}",
            file=sys.stderr,
            flush=True,
        )
    payload = payload_bytes(block)
    results: dict[str, Any] = {
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "commit": os.environ.get("BB_BENCH_COMMIT") or _working_tree_commit(),
        "package": str(Path(balanced_batches.__file__).parent),
        "dataset": dataset.spec.key,
        "rows": block.length,
        "source": source,
        "compression": args.compression,
        "pairs": args.pairs,
        "payload_bytes": payload,
        "payload_mb": payload / MB,
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "read_back": checked,
        "outputs": {
            arm: {"bytes": arms.path(arm).stat().st_size, **tree_facts(arms.path(arm))}
            for arm in ARMS
        },
        "summary": summarise(records, payload),
        "records": records,
    }
    if args.profile:
        costs = compression_costs(block, args.compression)
        results["jagged_baskets"] = costs
        print(
            f"jagged baskets: framing {costs['framing_s']:.3f} s; "
            + "; ".join(
                f"{arm} {costs[arm]['bytes'] / MB:.1f} MB -> "
                f"{costs[arm]['compressed_bytes'] / MB:.1f} MB in {costs[arm]['compress_s']:.3f} s"
                for arm in LAYOUTS
            )
        )
        others = [c for c in args.compressions.split(",") if c and c != args.compression]
        results["compressions"] = {c: compression_costs(block, c) for c in others}
        for name, other in results["compressions"].items():
            print(
                f"jagged baskets, {name}: "
                + "; ".join(
                    f"{arm} {other[arm]['compress_s']:.3f} s -> "
                    f"{other[arm]['compressed_bytes'] / MB:.1f} MB"
                    for arm in LAYOUTS
                )
            )
        results["profile"] = {arm: arms.profile(arm, args.top) for arm in ARMS}
        for arm in ARMS:
            print(f"## cProfile, {arm} ({results['profile'][arm]['total_s']:.2f} s)")
            print(results["profile"][arm]["own"])
            print(results["profile"][arm]["cumulative"])
    for arm in ARMS:
        arms.path(arm).unlink(missing_ok=True)
    target = out / "results" / f"vector_writer-{args.size}-{block.length}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2))
    print(table(results))
    return results


def _is_commit_option(argv: Sequence[str], index: int) -> bool:
    """`--commit REV` / `--commit=REV` and the value after it, and `--out` with its value."""
    current, previous = argv[index], argv[index - 1] if index else ""
    return current.startswith(("--commit", "--out")) or previous in ("--commit", "--out")


if __name__ == "__main__":
    main()
