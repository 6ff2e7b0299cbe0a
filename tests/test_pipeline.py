"""The whole pipeline on a small synthetic dataset: count -> summary -> plan -> run -> check.

Every expectation is recomputed here from the input files and the rules of the original
workflow (ORIGINAL-ALGORITHM.md), with uproot and numpy only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot

from conftest import (
    BINNING,
    EXECUTABLE,
    N_BATCHES,
    PER_BATCH,
    PILEUP,
    PROVENANCE_BRANCHES,
    PROVENANCE_KEYS,
    SEED,
    TREE,
    Dataset,
    Production,
    assert_rows_equal_sources,
    assert_same_arrays,
    assert_same_outputs,
    assert_same_provenance,
    cli,
    copy_dataset,
    count_args,
    expected_counts_json,
    planned_streams,
    process_of,
    produce,
    read_output,
    read_sources,
    reference_plan_args,
    region_of_rows,
    row_keys,
    totals_by_key,
)

COUNTERS = {"npfCand", "nele", "nmuon"}


def counts_json(workdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workdir / "counts.json").read_text())
    return data


def stream_cells(rows: ak.Array, provenance: dict[str, Any]) -> Counter[tuple[int, str, str]]:
    """Rows per (batch, process key, region name)."""
    return Counter((b, k, r) for b, k, r, _, _ in row_keys(rows, provenance))


# -- count and summary --------------------------------------------------------------------------


def test_counts_json_equals_an_independent_count(
    reference: Production, expected_counts: dict[str, Any]
) -> None:
    counts = counts_json(reference.workdir)
    assert counts.keys() == expected_counts.keys()
    for name, expected in expected_counts.items():
        assert counts[name] == expected, name
    # the regions of the example binning: 4 types x 5 |eta| bins x 13 pT bins
    assert len(next(iter(counts.values()))) == 3 + 260


def test_summary_json_sums_every_region_per_process_key(
    reference: Production, expected_counts: dict[str, Any]
) -> None:
    summary = json.loads((reference.workdir / "summary.json").read_text())
    expected = totals_by_key(expected_counts, "all")
    assert summary == expected
    assert set(summary) == {
        "DY_PU200",
        "TTTo2L2Nu_PU200",
        "QCD_PU200",
        "ElecGun_PU200",
        "MuonGun_PU200",
        "ggH_PU200",
    }


@pytest.mark.parametrize("per_batch", [2, 5])
def test_default_batch_count_is_largest_active_region_over_n(
    counted_copy: Path, expected_counts: dict[str, Any], per_batch: int
) -> None:
    streams = planned_streams(totals_by_key(expected_counts, PILEUP), PILEUP)
    result = cli(
        "plan", "--workdir", counted_copy, "--pileup", PILEUP, "--events-per-batch-type", per_batch
    )
    match = re.search(r"planned (\d+) batches x (\d+) regions x (\d+) candidates", result.stdout)
    assert match, result.stdout
    assert int(match[1]) == max(streams.values()) // per_batch
    assert int(match[2]) == len(streams)
    assert int(match[3]) == per_batch


# -- the reference production -------------------------------------------------------------------


def test_every_batch_has_n_rows_of_every_planned_region(
    reference: Production, reference_outputs: dict[str, ak.Array], expected_counts: dict[str, Any]
) -> None:
    streams = planned_streams(totals_by_key(expected_counts, PILEUP), PILEUP)
    provenance = reference.provenance
    assert list(reference_outputs) == [f"batch{i}.root" for i in range(N_BATCHES)]
    for index, (name, rows) in enumerate(reference_outputs.items()):
        cells = stream_cells(rows, provenance)
        assert cells == {(index, key, region): PER_BATCH for key, region in streams}, name
        assert len(rows) == PER_BATCH * len(streams)


def test_every_candidate_of_a_region_is_used_evenly(
    reference: Production, reference_outputs: dict[str, ak.Array], expected_counts: dict[str, Any]
) -> None:
    streams = planned_streams(totals_by_key(expected_counts, PILEUP), PILEUP)
    uses: Counter[tuple[str, str, str, int]] = Counter()
    for rows in reference_outputs.values():
        uses.update((k, r, f, e) for _, k, r, f, e in row_keys(rows, reference.provenance))
    per_stream: dict[tuple[str, str], list[int]] = {}
    for (key, region, _, _), n in uses.items():
        per_stream.setdefault((key, region), []).append(n)
    assert per_stream.keys() == streams.keys()
    needed = N_BATCHES * PER_BATCH
    for stream, total in streams.items():
        counts = per_stream[stream]
        # a sparse region is cycled through, a rich one sampled without repetition
        assert len(counts) == min(total, needed), stream
        assert sum(counts) == needed
        assert max(counts) - min(counts) <= 1, stream


def test_outputs_hold_every_input_branch_and_the_provenance(
    reference: Production, reference_outputs: dict[str, ak.Array], dataset: Dataset
) -> None:
    with uproot.open(dataset.paths[0]) as handle:
        input_branches = set(handle[TREE].keys())
    provenance = reference.provenance
    assert set(provenance["source_files"].values()) == set(dataset.paths)
    for name, rows in reference_outputs.items():
        assert set(rows.fields) == input_branches | set(PROVENANCE_BRANCHES), name
    # a ROOT output file carries the same provenance, so it can travel alone
    for path in reference.outputs():
        with uproot.open(path) as handle:
            embedded = json.loads(str(handle["bb_provenance"]))
        assert {key: embedded[key] for key in PROVENANCE_KEYS} == {
            key: provenance[key] for key in PROVENANCE_KEYS
        }
    # the provenance branches mean what they say: the values fall in the named region, and the
    # source file belongs to the named process key
    for rows in reference_outputs.values():
        columns = {
            b: ak.to_numpy(rows[b])
            for b in ("tau_pt", "tau_eta", "genLepton_index", "genLepton_kind")
        }
        regions = np.asarray(provenance["regions"], dtype=object)[ak.to_numpy(rows["bb_region"])]
        assert np.array_equal(region_of_rows(columns, BINNING), regions)
        for key, file_id in zip(
            ak.to_numpy(rows["bb_process_key"]), ak.to_numpy(rows["bb_source_file"]), strict=True
        ):
            path = provenance["source_files"][str(file_id)]
            assert provenance["process_keys"][key] == f"{process_of(path)}_{PILEUP}"


def test_every_row_equals_its_source_entry(
    reference: Production, reference_outputs: dict[str, ak.Array]
) -> None:
    sources = read_sources(reference.provenance)
    for name, rows in reference_outputs.items():
        assert_rows_equal_sources(rows, sources, name)


def test_rows_are_shuffled_within_a_file(reference_outputs: dict[str, ak.Array]) -> None:
    for name, rows in reference_outputs.items():
        stream = ak.to_numpy(rows["bb_process_key"]) * 10_000 + ak.to_numpy(rows["bb_region"])
        changes = np.count_nonzero(np.diff(stream))
        # grouped region after region, the stream would change only len(streams) - 1 times
        assert changes > 0.9 * (len(rows) - 1), name
        assert not np.all(np.diff(stream) >= 0)
        assert not np.all(np.diff(ak.to_numpy(rows["bb_source_entry"])) >= 0)


def test_the_same_seed_gives_identical_outputs(
    tmp_path: Path, dataset: Dataset, reference: Production
) -> None:
    again = produce(tmp_path / "work", dataset.file_list)
    assert_same_outputs(reference, again)
    assert_same_provenance(reference, again)


def test_another_seed_gives_other_outputs(
    tmp_path: Path, dataset: Dataset, reference: Production, reference_outputs: dict[str, ak.Array]
) -> None:
    workdir = tmp_path / "work"
    plan = reference_plan_args(workdir, seed=SEED + 1)
    other = produce(workdir, dataset.file_list, plan)
    assert [p.name for p in other.outputs()] == list(reference_outputs)
    for path in other.outputs():
        rows, before = read_output(path), reference_outputs[path.name]
        assert stream_cells(rows, other.provenance) == stream_cells(before, reference.provenance)
        # other candidates, not only another order
        assert Counter(row_keys(rows, other.provenance)) != Counter(
            row_keys(before, reference.provenance)
        )


# -- check --------------------------------------------------------------------------------------


def test_check_passes_then_finds_a_damaged_and_a_missing_output(
    reference: Production, reference_outputs: dict[str, ak.Array]
) -> None:
    rows = sum(len(rows) for rows in reference_outputs.values())
    result = cli("check", "--workdir", reference.workdir, "--sample", 100_000)
    assert f"checked {N_BATCHES} files, {rows} rows, {rows} rows compared" in result.stdout
    assert "all outputs match the plan" in result.stdout

    command = [str(EXECUTABLE), "check", "--workdir", str(reference.workdir), "--sample", "0"]
    damaged = reference.outputs()[1]
    original = damaged.read_bytes()
    middle = len(original) // 2
    try:
        flipped = bytes(b ^ 0xFF for b in original[middle : middle + 16])
        damaged.write_bytes(original[:middle] + flipped + original[middle + 16 :])
        process = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert process.returncode == 1, process.stderr
        assert str(damaged) in process.stderr
        assert "check failed" in process.stderr
    finally:
        damaged.write_bytes(original)

    missing = reference.outputs()[2]
    aside = missing.with_name("aside")
    missing.rename(aside)
    try:
        result = cli("check", "--workdir", reference.workdir, "--sample", 0, expect=1)
        assert f"{missing}: missing" in result.stderr
    finally:
        aside.rename(missing)


def test_run_again_remakes_a_deleted_output(tmp_path: Path, dataset: Dataset) -> None:
    binning = tmp_path / "coarse.yaml"
    binning.write_text("pt: [[20.0, 50.0, 30.0]]\nabseta: [[0.0, 1.5, 1.5]]\n")
    workdir = tmp_path / "work"
    plan = [
        "plan",
        "--workdir",
        workdir,
        "--pileup",
        PILEUP,
        "--events-per-batch-type",
        2,
        "--batches",
        2,
        "--seed",
        SEED,
    ]
    production = produce(workdir, dataset.file_list, plan, binning=binning)
    lost = production.outputs()[1]
    original = read_output(lost)
    lost.unlink()
    cli("run", "--workdir", workdir, "--workers", 1)
    assert lost.is_file(), "run reported success but did not remake the missing planned output"
    assert_same_arrays(read_output(lost), original, lost.name)
    cli("check", "--workdir", workdir, "--sample", 0)


# -- incremental counting -----------------------------------------------------------------------


def counted_line(stdout: str) -> tuple[int, int]:
    match = re.search(r"counted (\d+) files, (\d+) unchanged", stdout)
    assert match, stdout
    return int(match[1]), int(match[2])


def test_count_reads_only_new_or_changed_files(tmp_path: Path, dataset: Dataset) -> None:
    file_list, paths = copy_dataset(dataset, tmp_path / "data")
    workdir = tmp_path / "work"
    assert counted_line(cli(*count_args(workdir, file_list)).stdout) == (12, 0)
    assert counted_line(cli(*count_args(workdir, file_list)).stdout) == (0, 12)

    # rewriting a file with the same bytes (a new modification time) recounts that file only
    touched = Path(paths[4])
    touched.write_bytes(touched.read_bytes())
    stat = touched.stat()
    os.utime(touched, (stat.st_atime, stat.st_mtime + 10))
    assert counted_line(cli(*count_args(workdir, file_list)).stdout) == (1, 11)
    assert counts_json(workdir) == expected_counts_json(paths)

    # new content: counted again, and a plan made from the old counts is dropped
    cli("plan", "--workdir", workdir, "--pileup", PILEUP, "--events-per-batch-type", 2)
    shutil.copyfile(paths[1], paths[0])
    stat = Path(paths[0]).stat()
    os.utime(paths[0], (stat.st_atime, stat.st_mtime + 20))
    assert counted_line(cli(*count_args(workdir, file_list)).stdout) == (1, 11)
    counts = counts_json(workdir)
    assert counts == expected_counts_json(paths)
    first, second = (counts[name] for name in list(counts)[:2])
    assert {k: v for k, v in first.items() if k != "path"} == {
        k: v for k, v in second.items() if k != "path"
    }
    assert "no plan" in cli("run", "--workdir", workdir, "--workers", 1, expect=2).stderr


# -- plan options -------------------------------------------------------------------------------


def test_batches_per_file_groups_consecutive_batches(
    tmp_path: Path,
    dataset: Dataset,
    reference: Production,
    reference_outputs: dict[str, ak.Array],
    expected_counts: dict[str, Any],
) -> None:
    workdir = tmp_path / "work"
    plan = [*reference_plan_args(workdir, batches=5), "--batches-per-file", 3]
    grouped = produce(workdir, dataset.file_list, plan)
    streams = planned_streams(totals_by_key(expected_counts, PILEUP), PILEUP)
    assert [p.name for p in grouped.outputs()] == ["batch0.root", "batch1.root"]
    rows = [read_output(path) for path in grouped.outputs()]
    for batches, part in zip(([0, 1, 2], [3, 4]), rows, strict=True):
        cells = stream_cells(part, grouped.provenance)
        assert cells == {(b, k, r): PER_BATCH for b in batches for k, r in streams}
    # grouping changes where batches go, not what they hold
    batch = ak.to_numpy(rows[0]["bb_batch"])
    for index in range(N_BATCHES):
        before = reference_outputs[f"batch{index}.root"]
        assert Counter(row_keys(rows[0][batch == index], grouped.provenance)) == Counter(
            row_keys(before, reference.provenance)
        )


def test_max_reuse_one_never_repeats_a_candidate(tmp_path: Path, dataset: Dataset) -> None:
    binning = tmp_path / "coarse.yaml"
    binning.write_text("pt: [[20.0, 50.0, 30.0]]\nabseta: [[0.0, 1.5, 1.5]]\n")
    counts = expected_counts_json(dataset.paths, binning)
    streams = planned_streams(totals_by_key(counts, PILEUP), PILEUP)
    workdir = tmp_path / "work"
    plan = [
        "plan",
        "--workdir",
        workdir,
        "--pileup",
        PILEUP,
        "--events-per-batch-type",
        1,
        "--max-reuse",
        1,
        "--seed",
        SEED,
    ]
    capped = produce(workdir, dataset.file_list, plan, binning=binning)

    n_batches = min(streams.values())
    assert 1 < n_batches < max(streams.values())  # fewer than the default int(largest / N)
    assert capped.provenance["batches"] == n_batches
    keys = [k for path in capped.outputs() for k in row_keys(read_output(path), capped.provenance)]
    assert len(keys) == n_batches * len(streams)
    candidates = Counter((key, region, path, entry) for _, key, region, path, entry in keys)
    assert max(candidates.values()) == 1
    # the sparsest streams are used up exactly
    per_stream = Counter((key, region) for key, region, _, _ in candidates)
    assert per_stream == {stream: n_batches for stream in streams}


@pytest.mark.parametrize("file_format", ["parquet", "rntuple"])
def test_other_formats_hold_the_same_rows_as_root(
    in_format: Callable[[str], Production],
    reference: Production,
    reference_outputs: dict[str, ak.Array],
    file_format: str,
) -> None:
    other = in_format(file_format)
    extension = ".parquet" if file_format == "parquet" else ".root"
    paths = other.outputs(extension)
    assert [p.stem for p in paths] == [Path(n).stem for n in reference_outputs]
    for path in paths:
        rows, before = read_output(path), reference_outputs[path.with_suffix(".root").name]
        # the counters of the jagged branches are TTree bookkeeping; everything else is kept
        assert set(rows.fields) == set(before.fields) - COUNTERS, path.name
        assert_same_arrays(sorted_rows(rows), sorted_rows(before[rows.fields]), path.name)
    assert_same_provenance(reference, other)
    result = cli("check", "--workdir", other.workdir, "--sample", 200)
    assert "all outputs match the plan" in result.stdout


def sorted_rows(rows: ak.Array) -> ak.Array:
    """Rows in a canonical order of their provenance."""
    order = np.lexsort(
        [
            ak.to_numpy(rows[name])
            for name in (
                "bb_source_entry",
                "bb_source_file",
                "bb_region",
                "bb_process_key",
                "bb_batch",
            )
        ]
    )
    return rows[order]


# -- make --job ---------------------------------------------------------------------------------


def test_make_every_job_in_order_equals_run(
    tmp_path: Path, dataset: Dataset, reference: Production
) -> None:
    workdir = tmp_path / "work"
    jobs = produce(workdir, dataset.file_list, run_args=None)
    listing = cli("make", "--list", "--workdir", workdir).stdout
    reads = re.search(r"jobs 0-(\d+): read", listing)
    writes = re.search(r"jobs (\d+)-(\d+): write", listing)
    assert reads and writes, listing
    n_reads, first_write, last_write = int(reads[1]) + 1, int(writes[1]), int(writes[2])
    assert n_reads == len(dataset.paths) and first_write == n_reads
    assert last_write - first_write + 1 == N_BATCHES  # one output file per write job here

    # writing before reading, or a job the plan lacks, is a user error
    early = cli("make", "--workdir", workdir, "--job", first_write, expect=2)
    assert early.stderr.startswith("error: ")
    beyond = cli("make", "--workdir", workdir, "--job", last_write + 1, expect=2)
    assert f"0 to {last_write}" in beyond.stderr
    assert not jobs.outdir.exists() or not jobs.outputs()

    for job in range(last_write + 1):
        cli("make", "--workdir", workdir, "--job", job)
    assert_same_outputs(reference, jobs)
    assert_same_provenance(reference, jobs)


def test_branch_selection_writes_only_the_chosen_branches_with_their_counters(
    counted_copy: Path, dataset: Dataset
) -> None:
    """`--branches`/`--drop-branches` glob patterns choose the output branches; the selection's
    branches, the counters of kept counted arrays and the provenance branches stay; `check`
    passes and rows still equal their sources; a pattern matching nothing is a one-line error."""
    from faults_util import cli_error

    line = cli_error(*reference_plan_args(counted_copy), "--branches", "tau_*,pfCandz_*")
    assert line == "error: output.branches: 'pfCandz_*' matches no branch of the input files"
    cli(*reference_plan_args(counted_copy), "--branches", "tau_*,pfCand_*",
        "--drop-branches", "tau_phi,pfCand_mass")  # fmt: skip
    cli("run", "--workdir", counted_copy, "--workers", 1)
    cli("check", "--workdir", counted_copy, "--sample", 200)
    production = Production(counted_copy)
    with uproot.open(dataset.paths[0]) as handle:
        inputs = list(handle[TREE].keys())
    expected = {
        name
        for name in inputs
        if (name.startswith(("tau_", "pfCand_")) and name not in ("tau_phi", "pfCand_mass"))
        or name in ("genLepton_index", "genLepton_kind", "npfCand")
    } | set(PROVENANCE_BRANCHES)
    for path in production.outputs():
        with uproot.open(path) as handle:
            assert set(handle[TREE].keys()) == expected, path.name
        rows = read_output(path)
        sources = read_sources(production.provenance)
        kept = {
            i: source[[f for f in source.fields if f in rows.fields]]
            for i, source in sources.items()
        }
        assert_rows_equal_sources(rows, kept, path.name)
