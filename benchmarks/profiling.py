"""Where `run` spends its time: a profile of the in-process engine (`run --workers 1`).

With one worker the CLI runs every read and write unit in its own process, so one profile sees
all of it. py-spy (``pip install py-spy``) samples 100 times a second without slowing the
program down; without it cProfile is used, whose overhead inflates code that makes many small
calls (awkward, uproot's metadata), so its shares are a ranking rather than exact fractions.
Shares are of the time inside `run_plan`.
"""

from __future__ import annotations

import pstats
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .datasets import CLI
from .monitor import measure

SAMPLES_PER_S = 100
# (label, [(where, function name)]): "where" is a part of the file's path (our modules move);
# builtins are "~" in cProfile and invisible to py-spy (it shows their Python caller).
HOT_SPOTS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("run_plan (everything)", (("balanced_batches/", "run_plan"),)),
    ("read units: read_units._read_input", (("balanced_batches/", "_read_input"),)),
    ("  trees.open_tree (TTree metadata)", (("balanced_batches/", "open_tree"),)),
    ("  uproot TTree.arrays (read, decompress, interpret)", (("behaviors/TBranch.py", "arrays"),)),
    ("  read_units._plan_uses (regions, plan uses)", (("balanced_batches/", "_plan_uses"),)),
    ("  rows.RowBlock.take (select and order rows)", (("balanced_batches/", "take"),)),
    ("  shards.write_part (intermediate parts)", (("balanced_batches/", "write_part"),)),
    ("write units: write_units._write_outputs", (("balanced_batches/", "_write_outputs"),)),
    ("  rows.take_from (rows from the parts, shuffled)", (("balanced_batches/", "take_from"),)),
    ("  writers.write_ttree", (("balanced_batches/", "write_ttree"),)),
    ("    io.ttree_writer.mktree (the tree's metadata)", (("io/ttree_writer.py", "mktree"),)),
    ("    io.ttree_writer extend", (("io/ttree_writer.py", "extend"),)),
    (
        "    compression (zstd)",
        (("~", "<built-in method zstd.compress>"), ("uproot/compression.py", "compress")),
    ),
    ("  files.adler32_of", (("balanced_batches/", "adler32_of"),)),
    ("catalog: Catalog.set_unit", (("balanced_batches/", "set_unit"),)),
)


def _matches(filename: str, function: str, where: str, name: str) -> bool:
    return function.rsplit(".", 1)[-1] == name and (where in filename or where == filename)


def _cprofile_cumulative(stats: pstats.Stats, spots: tuple[tuple[str, str], ...]) -> float:
    table = stats.stats  # type: ignore[attr-defined]
    return float(
        sum(
            values[3]
            for (filename, _, function), values in table.items()
            if any(_matches(filename, function, where, name) for where, name in spots)
        )
    )


def analyse_cprofile(profile: Path, top: int = 20) -> dict[str, Any]:
    """Cumulative time of the hot spots and the top functions by own time (cProfile)."""
    stats = pstats.Stats(str(profile))
    whole = _cprofile_cumulative(stats, HOT_SPOTS[0][1]) or stats.total_tt  # type: ignore[attr-defined]
    own = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    return {
        "profiler": "cProfile",
        "profiled_s": whole,
        "hot_spots": [
            {
                "label": label,
                "seconds": (s := _cprofile_cumulative(stats, spots)),
                "share": s / whole,
            }
            for label, spots in HOT_SPOTS
        ],
        "top_own_time": [
            {"function": f"{Path(f).name}:{line}({fn})", "own_s": v[2], "share": v[2] / whole}
            for (f, line, fn), v in own
        ],
    }


def _frames(stack: str) -> list[tuple[str, str]]:
    """(function, file) of every frame of a py-spy raw stack, outermost first."""
    frames = []
    for frame in stack.split(";"):
        function, _, where = frame.rpartition(" (")
        frames.append((function, where.rstrip(")").rsplit(":", 1)[0]))
    return frames


def analyse_pyspy(raw: Path, top: int = 20) -> dict[str, Any]:
    """Inclusive share of every hot spot and the top leaf functions, from py-spy raw stacks."""
    stacks: list[tuple[list[tuple[str, str]], int]] = []
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if stack:
            stacks.append((_frames(stack), int(samples)))

    def inclusive(spots: tuple[tuple[str, str], ...]) -> int:
        return sum(
            count
            for frames, count in stacks
            if any(_matches(f, fn, w, n) for fn, f in frames for w, n in spots)
        )

    whole = inclusive(HOT_SPOTS[0][1]) or sum(count for _, count in stacks)
    ((where, name),) = HOT_SPOTS[0][1]
    leaves: Counter[str] = Counter()
    for frames, count in stacks:
        if not any(_matches(f, fn, where, name) for fn, f in frames):
            continue  # other threads: fsspec's event loop, idle pools
        function, filename = frames[-1]
        leaves[f"{function} ({'/'.join(Path(filename).parts[-2:])})"] += count
    return {
        "profiler": f"py-spy, {SAMPLES_PER_S} samples/s",
        "profiled_s": whole / SAMPLES_PER_S,
        "hot_spots": [
            {"label": label, "seconds": (n := inclusive(spots)) / SAMPLES_PER_S, "share": n / whole}
            for label, spots in HOT_SPOTS
        ],
        "top_own_time": [
            {"function": name, "own_s": n / SAMPLES_PER_S, "share": n / whole}
            for name, n in leaves.most_common(top)
        ],
    }


def analyse(profile: Path) -> dict[str, Any]:
    """A cProfile file (`.prof`) or py-spy raw stacks (`.txt`)."""
    return analyse_pyspy(profile) if profile.suffix == ".txt" else analyse_cprofile(profile)


def profile_run(planned: Path, directory: Path) -> dict[str, Any]:
    """Copies a planned working directory and profiles `run --workers 1` on it."""
    shutil.rmtree(directory, ignore_errors=True)
    work = directory / "work"
    work.mkdir(parents=True)
    for path in planned.glob("balanced-batches.sqlite*"):
        shutil.copy2(path, work / path.name)
    run = [CLI, "run", "--workdir", str(work), "--workers", "1"]
    pyspy = Path(sys.executable).parent / "py-spy"
    if pyspy.exists():
        profile = directory / "run-pyspy.txt"
        command = [str(pyspy), "record", "--format", "raw", "--rate", str(SAMPLES_PER_S)]
        command += ["--output", str(profile), "--", sys.executable, *run]
    else:
        profile = directory / "run.prof"
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), *run]
    measurement = measure(command, watch=work / "scratch")
    result = analyse(profile)
    result["wall_s"] = measurement.wall_s
    result["peak_rss_mb"] = measurement.peak_rss_max_mb
    result["profile"] = str(profile)
    shutil.rmtree(_output_directory(work), ignore_errors=True)
    return result


def _output_directory(work: Path) -> str:
    from balanced_batches.catalog import Catalog

    catalog = Catalog.open(work)
    try:
        return str(catalog.get_meta("plan_config")["output"]["directory"])
    finally:
        catalog.close()
