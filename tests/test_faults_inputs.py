"""Faults: bad inputs and bad configuration.

Input files that cannot be used (missing, empty, truncated, not ROOT, no tree `taus` or not a
TTree, a selection branch missing or jagged, no entries, a damaged basket), listed twice,
matching no process or several, changed or damaged after counting; `project.yaml`, the
original `process_types.yaml` and `plan` options that are wrong.

Every test asserts the exact outcome: the one-line message (naming the file, and the key and
value where there is one) and exit code, the catalog state (`status`, or `Catalog`: a bad file
with its reason, a failed read unit with its reason and attempts), counts.json against a
recomputation, that a refused command changed nothing in the working directory, and that a
failed unit alone is redone once its input is back, with outputs identical to the session's
`reference`. Commands run in this process, except `run` where it meets a damaged input.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot

from balanced_batches.shards import all_parts, parts_of_read_unit
from conftest import (
    CAMPAIGN,
    EXECUTABLE,
    PROCESS_TYPES,
    TREE,
    Dataset,
    Production,
    assert_same_outputs,
    cli,
    copy_dataset,
    count_args,
    expected_counts_json,
    read_selection_columns,
    reference_plan_args,
    tree_digest,
    write_ttree,
)
from faults_util import (
    cli_error,
    error_line,
    files,
    flat,
    plan_scratch,
    process_error,
    restore_stat,
    run_args,
    run_command,
    units,
)

# -- helpers ------------------------------------------------------------------------------------


def status_counts(stdout: str, kind: str) -> tuple[int, int, int]:
    """(pending, done, failed) of one row of the `status` jobs table (none left running or
    interrupted)."""
    cells = r"\s*│\s*(\d+)" * 5
    match = re.search(rf"{kind}{cells}", stdout)
    assert match, stdout
    assert int(match[2]) == int(match[3]) == 0, stdout
    return int(match[1]), int(match[4]), int(match[5])


# -- job bookkeeping ----------------------------------------------------------------------------


def test_a_failing_read_unit_is_listed_with_reason_and_attempts_then_only_it_is_redone(
    tmp_path: Path, dataset: Dataset, reference: Production
) -> None:
    file_list, paths = copy_dataset(dataset, tmp_path / "data")
    workdir = tmp_path / "work"
    cli(*count_args(workdir, file_list))
    cli(*reference_plan_args(workdir))
    victim = Path(paths[4])
    counted_stat = victim.stat()
    os.utime(victim, ns=(counted_stat.st_atime_ns, counted_stat.st_mtime_ns + 10**9))

    reason = (
        f"{victim}: changed since it was counted (size or modification time); "
        "run 'count' and 'plan' again"
    )
    result = cli(*run_args(workdir), "--keep-scratch", expect=None)
    result_stderr = result.stderr
    assert error_line(result.exit_code, result.stdout, result_stderr) == f"error: {reason}"
    rows = units(workdir)
    failed = [row for row in rows if row[2] == "failed"]
    assert len(failed) == 1
    kind, unit, _, attempts, error = failed[0]
    # another attempt would fail the same way: it is not retried (execution.retries = 2)
    assert (kind, attempts, error) == ("read", 1, reason)
    assert "retrying" not in flat(result_stderr)
    assert [row[2:] for row in rows if row[0] == "read" and row[1] != unit] == [
        ("done", 0, None)
    ] * 11
    assert [row[2:] for row in rows if row[0] == "write"] == [("pending", 0, None)] * 3
    status = cli("status", "--workdir", workdir).stdout
    assert status_counts(status, "read") == (0, 11, 1)
    assert status_counts(status, "write") == (3, 0, 0)
    assert f"failed read unit {unit} (1 attempts): {reason}" in flat(status)

    scratch = plan_scratch(workdir)
    kept = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in all_parts(scratch)}
    assert kept and not any(f"/r{unit:06d}-" in str(p) for p in kept)
    restore_stat(victim, counted_stat)
    result = cli(*run_args(workdir), "--keep-scratch")
    assert "reading inputs: 1 done" in result.stderr  # only the failed unit read its file again
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in kept} == kept
    assert parts_of_read_unit(scratch, unit)
    assert {row[2] for row in units(workdir)} == {"done"}
    assert_same_outputs(reference, Production(workdir))


def test_an_input_damaged_after_counting_fails_its_read_unit_with_one_line(
    tmp_path: Path, dataset: Dataset
) -> None:
    """Bytes of a basket the selection does not read go bad on disk (same size and mtime)."""
    file_list, paths = copy_dataset(dataset, tmp_path / "data")
    workdir = tmp_path / "work"
    cli(*count_args(workdir, file_list))
    cli(*reference_plan_args(workdir))
    victim = Path(paths[2])
    counted_stat = victim.stat()
    damage_basket(victim, "pfCand_pt")
    restore_stat(victim, counted_stat)

    line = process_error(run_command(EXECUTABLE, run_args(workdir)))
    assert re.fullmatch(f"error: {re.escape(str(victim))}: (cannot read|damaged|corrupt).*", line)
    failed = [row for row in units(workdir) if row[2] == "failed"]
    assert [(kind, attempts, error) for kind, _, _, attempts, error in failed] == [
        ("read", 1, line.removeprefix("error: "))  # a damaged file stays damaged: no retries
    ]


# -- bad inputs ---------------------------------------------------------------------------------


def bad_input_path(root: Path, name: str) -> Path:
    """A file name that matches process DY at pile-up PU200, so that it would be used."""
    path = root / CAMPAIGN / "crab_output" / "DYToLL_M-50_bad" / "crab_DYToLL_PU200" / "0000"
    path.mkdir(parents=True, exist_ok=True)
    return path / name


def write_missing(path: Path, source: str) -> None:
    """Nothing: the listed file does not exist."""


def write_zero_bytes(path: Path, source: str) -> None:
    path.write_bytes(b"")


def write_truncated(path: Path, source: str) -> None:
    """The first half of a real input file."""
    data = Path(source).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_garbage(path: Path, source: str) -> None:
    """Random bytes under a .root name."""
    path.write_bytes(np.random.default_rng(1).bytes(8192))


def write_other_tree(path: Path, source: str) -> None:
    """The selection branches, in a tree called `events`."""
    write_ttree(path, read_selection_columns(source), "events")


def write_rntuple(path: Path, source: str) -> None:
    """The selection branches in an RNTuple called `taus`, not a TTree."""
    with uproot.recreate(path) as handle:
        handle[TREE] = read_selection_columns(source)


def write_without_kind(path: Path, source: str) -> None:
    """Tree `taus` without genLepton_kind."""
    columns = read_selection_columns(source)
    del columns["genLepton_kind"]
    write_ttree(path, columns)


def write_empty_tree(path: Path, source: str) -> None:
    """Tree `taus` with every selection branch and no entry."""
    write_ttree(path, {name: values[:0] for name, values in read_selection_columns(source).items()})


def write_jagged_pt(path: Path, source: str) -> None:
    """tau_pt as a jagged array (two values per candidate)."""
    columns: dict[str, Any] = read_selection_columns(source)
    pt = columns["tau_pt"]
    columns["tau_pt"] = ak.unflatten(np.repeat(pt, 2), np.full(len(pt), 2))
    write_ttree(path, columns)


def damage_basket(path: Path, branch_name: str) -> None:
    """Zeroes the magic number of the compressed frame of a branch's first basket (same size)."""
    with uproot.open(path) as handle:
        branch = handle[TREE][branch_name]
        start = int(branch.member("fBasketSeek")[0]) + branch.basket_key(0).fKeylen
    with path.open("r+b") as handle:
        handle.seek(start + 9)  # after ROOT's 9-byte compression header
        handle.write(bytes(4))


def write_damaged_basket(path: Path, source: str) -> None:
    """A real input whose first tau_pt basket no longer decompresses."""
    shutil.copyfile(source, path)
    damage_basket(path, "tau_pt")


NO_BRANCH = "tree lacks branch\\(es\\) the selection needs: genLepton_kind"
BAD_INPUTS = {
    "missing": (write_missing, "file not found"),
    "zero-bytes": (write_zero_bytes, "empty file \\(0 bytes\\)"),
    "truncated": (write_truncated, "(not a readable ROOT file|cannot read|truncated)\\b.*"),
    "garbage": (write_garbage, "not a readable ROOT file \\(.+\\)"),
    "no-tree-taus": (write_other_tree, "no tree 'taus' in file"),
    "taus-is-an-rntuple": (write_rntuple, "'taus' is not a TTree"),
    "no-genLepton_kind": (write_without_kind, NO_BRANCH),
    "empty-tree": (write_empty_tree, "tree 'taus' has no entries"),
    "jagged-tau_pt": (
        write_jagged_pt,
        "branch 'tau_pt' holds several values per candidate; selections need one",
    ),
    "damaged-basket": (write_damaged_basket, "(cannot read|damaged|corrupt)\\b.*"),
}


def bad_input_list(tmp_path: Path, dataset: Dataset, kind: str) -> tuple[Path, Path, list[str]]:
    """A file list of two good DY PU200 inputs with the bad file between them."""
    write, _ = BAD_INPUTS[kind]
    good = [dataset.paths[0], dataset.paths[1]]
    bad = bad_input_path(tmp_path / "inputs", f"{kind}.root")
    write(bad, good[0])
    file_list = tmp_path / "flist.txt"
    file_list.write_text(f"{good[0]}\n{bad}\n{good[1]}\n")
    return file_list, bad, good


def assert_reason(reason: str, bad: Path, kind: str) -> None:
    """One line: the bad file's path, then the expected problem."""
    assert "\n" not in reason
    assert re.fullmatch(re.escape(str(bad)) + ": " + BAD_INPUTS[kind][1], reason), reason


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_stops_count_with_one_line_and_plan_refuses(
    tmp_path: Path, dataset: Dataset, kind: str
) -> None:
    file_list, bad, good = bad_input_list(tmp_path, dataset, kind)
    workdir = tmp_path / "work"
    line = cli_error(*count_args(workdir, file_list))
    reason = line.removeprefix("error: ")
    assert_reason(reason, bad, kind)
    assert not (workdir / "counts.json").exists()
    assert [(f.path, f.status, f.error) for f in files(workdir)] == [
        (good[0], "counted", None),
        (str(bad), "bad", reason),
        (good[1], "counted", None),
    ]
    assert cli_error(*reference_plan_args(workdir)) == (
        f"error: 1 input files could not be counted (first: {reason}); fix them and run 'count' "
        "again, or count with --on-bad-file skip to plan without them"
    )
    assert "no plan" in cli_error("run", "--workdir", workdir)


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_is_skipped_recorded_shown_and_left_out_of_the_plan(
    tmp_path: Path, dataset: Dataset, kind: str
) -> None:
    file_list, bad, good = bad_input_list(tmp_path, dataset, kind)
    workdir = tmp_path / "work"
    result = cli(*count_args(workdir, file_list), "--on-bad-file", "skip")
    assert result.stdout == (
        "counted 2 files, 0 unchanged, 1 unreadable, 0 matching no process; "
        f"{workdir / 'counts.json'}\n"
    )
    records = files(workdir)
    assert [(f.path, f.status) for f in records] == [
        (good[0], "counted"),
        (str(bad), "bad"),
        (good[1], "counted"),
    ]
    reason = records[1].error
    assert reason is not None
    assert_reason(reason, bad, kind)
    assert json.loads((workdir / "counts.json").read_text()) == expected_counts_json(good)

    summary = cli("summary", "--workdir", workdir, "--pileup", "PU200").stdout
    assert f"skipped {reason}" in flat(summary)
    status = cli("status", "--workdir", workdir).stdout
    assert "input files: 2 counted, 1 bad" in status
    assert f"bad {reason}" in flat(status)
    planned = cli(*reference_plan_args(workdir, batches=1)).stdout
    assert planned.splitlines()[0].endswith("; 2 read jobs + 1 write jobs"), planned


def test_a_bad_file_whose_name_holds_square_brackets_is_shown_verbatim(
    tmp_path: Path, dataset: Dataset
) -> None:
    """`summary` and `status` print paths and reasons as text, not as console markup."""
    bad = bad_input_path(tmp_path / "inputs", "eventTuple_[/v2].root")
    file_list = tmp_path / "flist.txt"
    file_list.write_text(f"{dataset.paths[0]}\n{bad}\n")
    workdir = tmp_path / "work"
    cli(*count_args(workdir, file_list), "--on-bad-file", "skip")
    reason = f"{bad}: file not found"
    assert [f.error for f in files(workdir)] == [None, reason]
    for args in (["status"], ["summary", "--pileup", "PU200"]):
        result = cli(*args, "--workdir", workdir, expect=None)
        assert result.exit_code == 0, f"{args[0]}: {result.exception!r}"
        assert reason in flat(result.stdout)


def test_duplicate_paths_are_counted_once_with_a_warning(tmp_path: Path, dataset: Dataset) -> None:
    first, second = dataset.paths[0], dataset.paths[1]
    file_list = tmp_path / "flist.txt"
    file_list.write_text(f"{first}\n{second}\n{first}\n")
    workdir = tmp_path / "work"
    result = cli(*count_args(workdir, file_list))
    assert result.stdout.startswith("counted 2 files, 0 unchanged, 0 unreadable, 0 matching no")
    assert (
        "WARNING balanced_batches.inputs: 1 duplicate paths in the input list are counted once"
        in result.stderr.splitlines()
    )
    assert [f.path for f in files(workdir)] == [first, second]
    assert json.loads((workdir / "counts.json").read_text()) == expected_counts_json(
        [first, second]
    )


def test_a_file_matching_no_process_is_reported_and_not_counted(
    tmp_path: Path, dataset: Dataset
) -> None:
    stray = tmp_path / CAMPAIGN / "crab_output" / "Unknown_Sample" / "crab_Unknown_PU200" / "f.root"
    stray.parent.mkdir(parents=True)
    shutil.copyfile(dataset.paths[0], stray)
    good = [dataset.paths[0], dataset.paths[1]]
    file_list = tmp_path / "flist.txt"
    file_list.write_text(f"{good[0]}\n{stray}\n{good[1]}\n")
    workdir = tmp_path / "work"
    result = cli(*count_args(workdir, file_list))
    assert ", 1 matching no process;" in result.stdout
    assert (
        f"WARNING balanced_batches.stages.count: {stray} matches no process: not used"
        in result.stderr.splitlines()
    )
    assert json.loads((workdir / "counts.json").read_text()) == expected_counts_json(good)
    summary = cli("summary", "--workdir", workdir, "--pileup", "PU200").stdout
    assert f"matches no process {stray}" in flat(summary)
    planned = cli(*reference_plan_args(workdir, batches=1)).stdout
    assert planned.splitlines()[0].endswith("; 2 read jobs + 1 write jobs"), planned


def test_a_file_matching_several_processes_goes_to_the_first_with_a_warning(
    tmp_path: Path, dataset: Dataset
) -> None:
    both = tmp_path / CAMPAIGN / "crab_output" / "DYToLL_TTTo2L2Nu" / "crab_x_PU200" / "f.root"
    both.parent.mkdir(parents=True)
    shutil.copyfile(dataset.paths[0], both)
    file_list = tmp_path / "flist.txt"
    file_list.write_text(f"{dataset.paths[0]}\n{both}\n")
    workdir = tmp_path / "work"
    result = cli(*count_args(workdir, file_list))
    name = f"{CAMPAIGN}/DYToLL_TTTo2L2Nu/crab_x_PU200/f.root"
    assert (
        f"WARNING balanced_batches.inputs: {name} matches processes DY, TTTo2L2Nu: "
        "the first is used" in result.stderr.splitlines()
    )
    counts = json.loads((workdir / "counts.json").read_text())
    assert counts[name]["process"] == "DY"
    assert counts == expected_counts_json([dataset.paths[0], str(both)])


def test_an_input_rewritten_after_counting_is_refused_by_run_and_recounted_by_count(
    tmp_path: Path, dataset: Dataset
) -> None:
    file_list, paths = copy_dataset(dataset, tmp_path / "data")
    workdir = tmp_path / "work"
    cli(*count_args(workdir, file_list))
    cli(*reference_plan_args(workdir))
    shutil.copyfile(paths[1], paths[0])  # other candidates, a new modification time
    assert cli_error(*run_args(workdir)) == (
        f"error: {paths[0]}: changed since it was counted (size or modification time); "
        "run 'count' and 'plan' again"
    )
    result = cli(*count_args(workdir, file_list))
    assert result.stdout.startswith("counted 1 files, 11 unchanged, 0 unreadable")
    assert (
        "WARNING balanced_batches.stages.count: counts change: the stored plan is dropped, "
        "run 'plan' again" in result.stderr.splitlines()
    )
    assert json.loads((workdir / "counts.json").read_text()) == expected_counts_json(paths)
    assert cli_error(*run_args(workdir)) == (
        "error: no plan in this working directory; run 'balanced-batches plan' first"
    )


# -- bad configuration --------------------------------------------------------------------------


PROJECT_ERRORS = {
    "malformed-yaml": (
        "plan:\n  pileup: [PU200\n",
        r"{file}: malformed YAML at line 3, column 1: .+",
    ),
    "unknown-key": (
        "plan:\n  pileup: PU200\n  bogus_key: 3\n",
        r"{file}: key 'plan\.bogus_key' = 3: Extra inputs are not permitted",
    ),
    "non-increasing-bins": (
        "binning:\n  pt: [[20.0, 60.0, 5.0], [40.0, 100.0, 10.0]]\n  abseta: [[0.0, 2.4, 0.6]]\n",
        r"{file}: key 'binning\.pt' = \[\[20\.0, 60\.0, 5\.0\], \[40\.0, 100\.0, 10\.0\]\]: "
        r"bin edges are not increasing: \[20\.0, .*, 55\.0, 40\.0, .*\]",
    ),
    "empty-bins": (
        "binning:\n  pt: []\n  abseta: [[0.0, 2.4, 0.6]]\n",
        r"{file}: key 'binning\.pt' = \[\]: needs at least one \[start, stop, step\] triple",
    ),
    "negative-step": (
        "binning:\n  pt: [[20.0, 60.0, -5.0]]\n  abseta: [[0.0, 2.4, 0.6]]\n",
        r"{file}: key 'binning\.pt' = \[\[20\.0, 60\.0, -5\.0\]\]: "
        r"step must be positive in \[20\.0, 60\.0, -5\.0\]",
    ),
    "zero-step": (
        "binning:\n  pt: [[20.0, 60.0, 5.0]]\n  abseta: [[0.0, 2.4, 0.0]]\n",
        r"{file}: key 'binning\.abseta' = \[\[0\.0, 2\.4, 0\.0\]\]: "
        r"step must be positive in \[0\.0, 2\.4, 0\.0\]",
    ),
    "unknown-active-type": (
        "processes:\n  DY:\n    regex: DYToLL\n    active_types: [genuine, tau]\n",
        r"{file}: key .*processes\.DY\.active_types.*'tau'.*",
    ),
    "regex-does-not-compile": (
        "processes:\n  DY:\n    regex: 'DYTo(LL'\n    active_types: [genuine]\n",
        r"{file}: key 'processes\.DY\.regex' = 'DYTo\(LL': regular expression does not compile: "
        r"missing \), unterminated subpattern at position 4",
    ),
}


@pytest.mark.parametrize("case", PROJECT_ERRORS)
def test_a_bad_project_yaml_is_one_line_naming_file_key_and_value_and_writes_nothing(
    tmp_path: Path, counted_copy: Path, dataset: Dataset, case: str
) -> None:
    text, expected = PROJECT_ERRORS[case]
    project = tmp_path / "project.yaml"
    project.write_text(text)
    before = tree_digest(counted_copy)
    line = cli_error(
        "count",
        "--workdir",
        counted_copy,
        "--config",
        project,
        "--input-file-list",
        dataset.file_list,
    )
    assert re.fullmatch("error: " + expected.format(file=re.escape(str(project))), line), line
    assert tree_digest(counted_copy) == before


PROCESS_TYPES_ERRORS = {
    "unknown-active-type": (
        "DY:\n    active_types: ['genuine', 'tau']\n    regex: 'DYToLL'\n",
        r"{file}: key .*DY.*active_types.*'tau'.*",
    ),
    "regex-does-not-compile": (
        "DY:\n    active_types: ['genuine']\n    regex: 'DYTo(LL'\n",
        r"{file}: key 'DY\.regex' = 'DYTo\(LL': regular expression does not compile: "
        r"missing \), unterminated subpattern at position 4",
    ),
}


@pytest.mark.parametrize("case", PROCESS_TYPES_ERRORS)
def test_a_bad_original_process_types_yaml_is_one_line_naming_it_and_writes_nothing(
    tmp_path: Path, counted_copy: Path, dataset: Dataset, case: str
) -> None:
    text, expected = PROCESS_TYPES_ERRORS[case]
    types = tmp_path / "process_types.yaml"
    types.write_text(text)
    args = [
        types if arg == PROCESS_TYPES else arg
        for arg in count_args(counted_copy, dataset.file_list)
    ]
    before = tree_digest(counted_copy)
    line = cli_error(*args)
    assert re.fullmatch("error: " + expected.format(file=re.escape(str(types))), line), line
    assert tree_digest(counted_copy) == before


def test_bad_plan_options_are_one_line_naming_key_and_value_and_write_nothing(
    tmp_path: Path, counted_copy: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    unwritable = blocker / "batches"
    plan = ["plan", "--workdir", counted_copy, "--pileup", "PU200"]
    cases = {
        "zero-per-batch": (
            [*plan, "--events-per-batch-type", 0],
            "error: command line: key 'plan.events_per_batch_type' = 0: "
            "Input should be greater than 0",
        ),
        "unwritable-output": (
            [*plan, "--events-per-batch-type", 2, "--output-directory", unwritable],
            f"error: output.directory = '{unwritable}': not writable (Not a directory)",
        ),
        "grid-protocol-without-client": (
            [*plan, "--events-per-batch-type", 2, "--output-directory", "srm://se:8443/b"],
            "error: output.directory: srm://se:8443/b: srm:// is not supported (grid storage "
            "that speaks SRM or GridFTP serves root:// too: use its XRootD door); use a local "
            "path, root:// (XRootD) or davs:// / https:// (WebDAV), or install an fsspec "
            "client for it",
        ),
        "max-reuse-leaves-no-batch": (
            [*plan, "--events-per-batch-type", 2, "--max-reuse", 1],
            "error: --max-reuse 1 leaves zero batches: the sparsest active region has 1 "
            "candidates, fewer than events per batch type 2 / 1",
        ),
    }
    before = tree_digest(counted_copy)
    for name, (args, expected) in cases.items():
        assert cli_error(*args) == expected, name
        assert tree_digest(counted_copy) == before, name
    assert not unwritable.exists()
