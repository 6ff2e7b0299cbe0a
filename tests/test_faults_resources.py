"""Faults: resources run short: a full disk while outputs are written, and a pathological input
(one candidate with 1e5 PF candidates).

The full disk is a 2 MB tmpfs (room for one output file) where it can be mounted, and a
file-size limit on the process (no root needed) in any case. Every test asserts the exact
outcome: a disk the estimate shows too small is refused before any work; otherwise one line
naming the output directory and the problem, the write units failed with that reason and no
retry, no partial file left, outputs written before byte for byte the session's `reference`,
and a later run completing to the reference bytes. The huge candidate goes through `count`,
`plan` and `run` with a peak resident memory below 1.5 GB and reaches an output whole. The
commands are real processes (the limits and the memory are theirs).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot

from conftest import (
    BINNING,
    CAMPAIGN,
    EXECUTABLE,
    TREE,
    Dataset,
    active_types,
    cli,
    count_args,
    read_output,
    read_selection_columns,
    reference_plan_args,
    region_of_rows,
    write_ttree,
)
from faults_util import (
    file_size_limit,
    leftovers,
    output_digests,
    peak_rss_of,
    process_error,
    run_args,
    run_command,
    units,
)

# -- a full disk --------------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: room for one output file of the reference plan, not for two."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}); RLIMIT_FSIZE covers it")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("limit", ["tmpfs", "file-size-limit"])
def test_a_full_disk_while_writing_outputs_is_one_line_and_a_later_run_completes(
    request: pytest.FixtureRequest,
    counted_copy: Path,
    reference_digests: dict[str, str],
    limit: str,
) -> None:
    if limit == "tmpfs":
        outdir = request.getfixturevalue("small_tmpfs") / "batches"
        preexec = None
        problem = "No space left on device"
    else:
        outdir = counted_copy / "batches"
        # an output file is ~1.35 MB; intermediate parts are as large, so they are made first
        preexec = file_size_limit(800_000)
        problem = "File too large"
    cli(*reference_plan_args(counted_copy), "--output-directory", outdir)
    if preexec is not None:
        reads = [row[1] for row in units(counted_copy) if row[0] == "read"]
        for job in reads:
            cli("make", "--workdir", counted_copy, "--job", job)
    if limit == "tmpfs":
        # the estimate sees that 3 files of ~1.35 MB cannot fit: refused before any work
        refused = process_error(run_command(EXECUTABLE, run_args(counted_copy)))
        assert re.fullmatch(
            f"error: not enough free space: output files in {re.escape(str(outdir))} need about "
            r"[\d.]+ MB, the disk has [\d.]+ MB free; .* or pass --no-space-check to go on anyway",
            refused,
        ), refused
        assert {row[2] for row in units(counted_copy)} == {"pending"}
    outcome = run_command(
        EXECUTABLE, [*run_args(counted_copy), "--no-space-check"], preexec_fn=preexec
    )
    line = process_error(outcome)
    assert re.fullmatch(
        f"error: cannot write output files into {re.escape(str(outdir))}: {problem}"
        r"( \(and [12] more failed write units\))?",
        line,
    ), line
    written = output_digests(outdir)
    assert all(reference_digests[name] == digest for name, digest in written.items())
    assert len(written) == (1 if limit == "tmpfs" else 0)
    assert leftovers(outdir) == []
    reason = line.removeprefix("error: ").split(" (and ")[0]
    writes = [row[2:] for row in units(counted_copy) if row[0] == "write"]
    assert sorted(writes) == sorted(
        # a full disk stays full for now: no retries within the run
        [("done", 0, None)] * len(written) + [("failed", 1, reason)] * (3 - len(written))
    )
    assert {row[2] for row in units(counted_copy) if row[0] == "read"} == {"done"}

    if limit == "tmpfs":
        subprocess.run(["mount", "-o", "remount,size=64m", str(outdir.parent)], check=True)
    again = run_command(EXECUTABLE, run_args(counted_copy))
    assert again.returncode == 0, again.stderr
    assert output_digests(outdir) == reference_digests
    assert leftovers(outdir) == []


# -- a pathological input -----------------------------------------------------------------------


PF_CANDIDATES = 100_000
PEAK_RSS_LIMIT = 1.5 * 2**30


def write_with_huge_candidate(source: str, target: Path, entry: int) -> None:
    """A copy of an input file in which one candidate has PF_CANDIDATES PF candidates.

    Written like the generator writes: scalars, and one record per counted group
    (`pfCand`, `ele`, `muon`) that uproot stores as `pfCand_*[npfCand]` branches.
    """
    with uproot.open(source) as handle:
        tree = handle[TREE]
        counters = {
            branch.name: branch.member("fLeaves")[0].member("fLeafCount").member("fName")
            for branch in tree.values()
            if isinstance(branch.interpretation, uproot.AsJagged)
        }
        arrays = tree.arrays()
    groups: dict[str, dict[str, ak.Array]] = {}
    for name, counter in counters.items():
        outer = counter.removeprefix("n")
        groups.setdefault(outer, {})[name.removeprefix(outer + "_")] = arrays[name]
    branches: dict[str, Any] = {
        name: arrays[name]
        for name in arrays.fields
        if name not in counters and name not in {f"n{outer}" for outer in groups}
    }
    rng = np.random.default_rng(5)
    pf: dict[str, ak.Array] = {}
    for inner, values in groups["pfCand"].items():
        dtype = ak.to_numpy(ak.flatten(values)).dtype
        huge = ak.unflatten(rng.uniform(0, 50, PF_CANDIDATES).astype(dtype), [PF_CANDIDATES])
        pf[inner] = ak.concatenate([values[:entry], huge, values[entry + 1 :]])
    groups["pfCand"] = pf
    for outer, fields in groups.items():
        branches[outer] = ak.zip(fields)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_ttree(target, branches)


def test_a_candidate_with_1e5_pf_candidates_goes_through_with_bounded_memory(
    tmp_path: Path, dataset: Dataset
) -> None:
    source = dataset.paths[0]  # DY, PU200: every type is active
    regions = region_of_rows(read_selection_columns(source), BINNING)
    entry = int(np.flatnonzero(regions != "")[0])
    target = (
        tmp_path / CAMPAIGN / "crab_output" / "DYToLL_M-50_huge" / "crab_DYToLL_PU200" / "h.root"
    )
    write_with_huge_candidate(source, target, entry)
    file_list = tmp_path / "flist.txt"
    file_list.write_text(f"{target}\n")
    workdir = tmp_path / "work"

    peaks = {}
    outcome, peaks["count"] = peak_rss_of(EXECUTABLE, count_args(workdir, file_list))
    assert outcome.returncode == 0, outcome.stderr
    counts = json.loads((workdir / "counts.json").read_text())
    largest = max(
        n for k, n in next(iter(counts.values())).items() if k.split("_")[0] in active_types("DY")
    )
    # as many batches as the largest region has candidates: every candidate is used
    plan = [
        "plan",
        "--workdir",
        workdir,
        "--pileup",
        "PU200",
        "--events-per-batch-type",
        1,
        "--batches",
        largest,
        "--batches-per-file",
        largest,
    ]
    outcome, peaks["plan"] = peak_rss_of(EXECUTABLE, plan)
    assert outcome.returncode == 0, outcome.stderr
    outcome, peaks["run"] = peak_rss_of(EXECUTABLE, run_args(workdir))
    assert outcome.returncode == 0, outcome.stderr
    assert all(peak < PEAK_RSS_LIMIT for peak in peaks.values()), peaks

    rows = read_output(workdir / "batches" / "batch0.root")
    huge = ak.to_numpy(ak.num(rows["pfCand_pt"])) == PF_CANDIDATES
    assert huge.any()
    assert set(ak.to_numpy(rows["bb_source_entry"][huge])) == {entry}
