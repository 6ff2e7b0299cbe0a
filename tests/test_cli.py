"""The command line: user errors (one line, exit code 2, nothing written), --version, summary."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    BINNING,
    CAMPAIGN,
    EXECUTABLE,
    Dataset,
    active_types,
    cli,
    count_args,
    planned_streams,
    python_output,
    totals_by_key,
    tree_digest,
)
from faults_util import fork_servers, kill_group, members_after


def assert_one_line_error(result: Any, *fragments: str) -> str:
    """Exit code 2, nothing on stdout, exactly one line `error: ...` on stderr."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return str(lines[0])


# -- configuration errors of count --------------------------------------------------------------


BAD_BINNINGS = [
    pytest.param(None, ["missing.yaml", "cannot read"], id="missing-process-types"),
    pytest.param(
        "pt: [[20.0, 60.0, 5.0]\nabseta: [[0.0, 2.4, 0.6]]\n",
        ["binning.yaml", "malformed YAML", "line"],
        id="malformed-binning",
    ),
    pytest.param(
        "pt: [[20.0, 60.0, 5.0], [40.0, 100.0, 10.0]]\nabseta: [[0.0, 2.4, 0.6]]\n",
        ["binning.yaml", "'pt'", "not increasing"],
        id="non-increasing-bins",
    ),
    pytest.param(
        "pt: [[20.0, 60.0, 0.0]]\nabseta: [[0.0, 2.4, 0.6]]\n",
        ["binning.yaml", "step must be positive"],
        id="zero-step",
    ),
]


@pytest.mark.parametrize(("binning_text", "fragments"), BAD_BINNINGS)
def test_bad_count_configuration_is_one_line_and_writes_nothing(
    tmp_path: Path, dataset: Dataset, binning_text: str | None, fragments: list[str]
) -> None:
    binning = tmp_path / "binning.yaml"
    binning.write_text(binning_text if binning_text is not None else BINNING.read_text())
    args = count_args(tmp_path / "work", dataset.file_list, binning)
    if binning_text is None:
        args[args.index("--process-types") + 1] = tmp_path / "missing.yaml"
    before = tree_digest(tmp_path)
    assert_one_line_error(cli(*args, expect=None), *fragments)
    assert tree_digest(tmp_path) == before
    assert not (tmp_path / "work").exists()


def test_a_file_list_naming_a_missing_file_is_one_line(tmp_path: Path, dataset: Dataset) -> None:
    file_list = tmp_path / "flist.txt"
    missing = f"{tmp_path}/{CAMPAIGN}/crab_output/DYToLL_M-50/crab_DYToLL_PU200/0000/nothing.root"
    file_list.write_text(f"{dataset.paths[0]}\n{missing}\n")
    result = cli(*count_args(tmp_path / "work", file_list), expect=None)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"error: {missing}: file not found"], result.stderr


# -- plan and run errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["--pileup", "PU200", "--events-per-batch-type", "0"], ["events_per_batch_type", "0"]),
        (
            ["--pileup", "PU300", "--events-per-batch-type", "2"],
            ["'PU300'", "NoPU", "PU140", "PU200", "all", "none"],
        ),
        (
            ["--pileup", "PU200", "--events-per-batch-type", "2", "--max-reuse", "1"],
            ["--max-reuse 1", "zero batches"],
        ),
        (["--pileup", "PU200", "--events-per-batch-type", "2", "--format", "hdf5"], ["'hdf5'"]),
    ],
    ids=["zero-per-batch", "unknown-pileup", "max-reuse-leaves-no-batch", "unknown-format"],
)
def test_bad_plan_options_are_one_line_and_write_nothing(
    counted_copy: Path, options: list[str], fragments: list[str]
) -> None:
    before = tree_digest(counted_copy)
    result = cli("plan", "--workdir", counted_copy, *options, expect=None)
    assert_one_line_error(result, *fragments)
    assert tree_digest(counted_copy) == before
    # and no plan was stored
    assert_one_line_error(cli("make", "--list", "--workdir", counted_copy, expect=None), "no plan")


def test_a_failed_plan_keeps_the_previous_plan(counted_copy: Path) -> None:
    good = ["plan", "--workdir", counted_copy, "--pileup", "PU200", "--events-per-batch-type", 2]
    cli(*good, "--batches", 2)
    listing = cli("make", "--list", "--workdir", counted_copy).stdout
    before = tree_digest(counted_copy)
    result = cli(*good, "--max-reuse", 1, expect=None)
    assert_one_line_error(result, "--max-reuse 1")
    assert tree_digest(counted_copy) == before
    assert cli("make", "--list", "--workdir", counted_copy).stdout == listing


def test_run_before_plan_is_one_line_and_writes_nothing(counted_copy: Path) -> None:
    before = tree_digest(counted_copy)
    result = cli("run", "--workdir", counted_copy, "--workers", 1, expect=None)
    assert_one_line_error(result, "no plan", "plan")
    assert tree_digest(counted_copy) == before


def test_plan_before_count_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    args = ["plan", "--workdir", workdir, "--pileup", "PU200", "--events-per-batch-type", 2]
    assert_one_line_error(cli(*args, expect=None), str(workdir), "count")
    assert not workdir.exists()
    workdir.mkdir()
    assert_one_line_error(cli(*args, expect=None), "count")
    assert not any(workdir.iterdir())


def test_check_before_run_reports_missing_outputs(counted_copy: Path) -> None:
    cli(
        "plan",
        "--workdir",
        counted_copy,
        "--pileup",
        "PU200",
        "--events-per-batch-type",
        2,
        "--batches",
        2,
    )
    result = cli("check", "--workdir", counted_copy, expect=1)
    assert "batch0.root: missing" in result.stderr
    assert "batch1.root: missing" in result.stderr


# -- the real executable ------------------------------------------------------------------------


def run_executable(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXECUTABLE), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_version() -> None:
    expected = f"balanced-batches {importlib.metadata.version('balanced-batches')}"
    process = run_executable("--version")
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == expected
    assert cli("--version").stdout.strip() == expected


def test_python_m_balanced_batches_is_the_command() -> None:
    printed = python_output("-m", "balanced_batches", "--version", timeout=120)
    assert printed == run_executable("--version").stdout.strip()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(["--no-such-option"], "No such option", id="unknown-option"),
        pytest.param([], "no processes configured", id="no-processes"),
    ],
)
def test_a_user_error_after_an_early_start_of_local_workers_leaves_nothing_running(
    tmp_path: Path, options: list[str], message: str
) -> None:
    """`count` starts its workers' server once its options are parsed, before it reads its
    configuration; a command that then fails stops it before it exits (the server would end
    by itself only later, once its imports are done). multiprocessing's resource tracker,
    started with the server, ends on its own once the command's pipe to it closes."""
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            [str(EXECUTABLE), "count", "--workdir", str(tmp_path / "w"), *options],
            stdout=out,
            stderr=err,
            cwd=tmp_path,
            start_new_session=True,
        )
    try:
        process.wait(timeout=120)
        servers_left = fork_servers(process.pid)
        left_running = members_after(process.pid, grace=5.0)
    finally:
        kill_group(process.pid)
    assert process.returncode == 2, stderr.read_text()
    assert message in stderr.read_text() and "Traceback" not in stderr.read_text()
    assert stdout.read_text() == ""
    assert servers_left == []
    assert left_running == []


def test_a_user_error_in_a_real_process_is_one_line_without_traceback(tmp_path: Path) -> None:
    process = run_executable(
        "plan",
        "--workdir",
        tmp_path / "nowhere",
        "--pileup",
        "PU200",
        "--events-per-batch-type",
        2,
    )
    assert process.returncode == 2
    assert process.stdout == ""
    assert len(process.stderr.splitlines()) == 1, process.stderr
    assert process.stderr.startswith("error: ") and "Traceback" not in process.stderr


def parse_table(stdout: str, key: str) -> tuple[int, dict[str, int], list[str]]:
    """(total in the title, region name -> count, type labels) of one process key's table."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{key}: "))
    title = re.match(rf"{key}: (\d+) candidates", lines[start])
    assert title, lines[start]
    counts: dict[str, int] = {}
    labels: list[str] = []
    type_name, eta_bin = "", 0
    for line in lines[start + 1 :]:
        if line.startswith("└"):
            break
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if cells[0]:
            labels.append(cells[0])
            type_name, eta_bin = cells[0].split()[0], 0
        for pt_bin, cell in enumerate(cells[2:]):
            counts[f"{type_name}_absetabin{eta_bin}_ptbin{pt_bin}"] = int(cell)
        eta_bin += 1
    return int(title[1]), counts, labels


def test_summary_prints_every_region_count_of_every_process_key(
    counted_copy: Path, expected_counts: dict[str, Any]
) -> None:
    process = run_executable(
        "summary", "--workdir", counted_copy, "--pileup", "PU200", "--events-per-batch-type", 2
    )
    assert process.returncode == 0, process.stderr
    totals = totals_by_key(expected_counts, "PU200")
    assert len(totals) == 6
    for key, regions in totals.items():
        total, counts, labels = parse_table(process.stdout, key)
        assert total == sum(regions.values()), key
        assert counts == regions, key
        process_name = key.rsplit("_", 1)[0]
        expected_labels = [
            t if t in active_types(process_name) else f"{t} (inactive)"
            for t in ("electron", "muon", "jet", "genuine")
        ]
        assert labels == expected_labels, key
    streams = planned_streams(totals, "PU200")
    assert f"{max(streams.values()) // 2} batches of 2 candidates per region" in process.stdout
    assert f"{len(streams)} regions planned" in process.stdout


def test_summary_without_counts_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(cli("summary", "--workdir", tmp_path, expect=None), "count")
