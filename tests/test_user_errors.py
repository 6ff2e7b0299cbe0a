"""Mistakes a user can make, and the environment failing under them: one line on stderr that
names the culprit, exit 2 (1 for `check` problems), never a traceback, and nothing blamed on
files that are not at fault.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from balanced_batches.catalog import Catalog
from conftest import (
    CAMPAIGN,
    EXECUTABLE,
    Dataset,
    Production,
    cli,
    count_args,
    expected_counts_json,
    project_yaml,
    reference_plan_args,
)
from faults_util import (
    KillPoint,
    cli_error,
    process_error,
    run_command,
    run_killed_at,
)


@contextlib.contextmanager
def mounted(*args: str) -> Iterator[None]:
    """`mount ARGS`, unmounted after; the test is skipped where mounting is not allowed."""
    made = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", args[-1]], check=True)


# -- plan options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compression", "limit"),
    [("zstd:99", 22), ("zlib:99", 9), ("lz4:99", 12), ("lzma:10", 9)],
)
def test_a_compression_level_out_of_range_is_refused_when_planning(
    counted_copy: Path, compression: str, limit: int
) -> None:
    message = cli_error(*reference_plan_args(counted_copy), "--compression", compression)
    assert message.startswith("error: "), message
    assert repr(compression) in message or compression in message, message
    assert f"0 to {limit}" in message or f"0 and {limit}" in message, message
    assert "no plan" in cli_error("run", "--workdir", counted_copy)


# -- the environment ------------------------------------------------------------------------------


def test_a_read_only_output_directory_is_one_line(counted_copy: Path) -> None:
    outdir = counted_copy / "batches"
    outdir.mkdir()
    cli(*reference_plan_args(counted_copy))
    with mounted("--bind", "-o", "ro", str(outdir), str(outdir)):
        outcome = run_command(EXECUTABLE, ["run", "--workdir", counted_copy, "--workers", 1])
        line = process_error(outcome)
    assert line == f"error: cannot write output files into {outdir}: Read-only file system", line
    again = run_command(EXECUTABLE, ["run", "--workdir", counted_copy, "--workers", 1])
    assert again.returncode == 0, again.stderr


def test_a_working_directory_on_a_full_disk_is_one_line(tmp_path: Path, dataset: Dataset) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)):
        descriptor = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            with contextlib.suppress(OSError):
                while True:
                    os.write(descriptor, bytes(4096))
        finally:
            os.close(descriptor)
        outcome = run_command(EXECUTABLE, count_args(disk / "work", dataset.file_list))
        line = process_error(outcome)
    assert "No space left on device" in line, line
    assert str(disk / "work") in line, line


def test_an_unreachable_scheduler_is_one_line_naming_it(counted_copy: Path) -> None:
    cli(*reference_plan_args(counted_copy))
    address = "tcp://127.0.0.1:9"  # discard: nothing listens on loopback
    line = cli_error("run", "--workdir", counted_copy, "--scheduler", address)
    assert line.startswith(f"error: --scheduler {address}: cannot reach a Dask scheduler"), line


# -- selection expressions ------------------------------------------------------------------------


@pytest.mark.parametrize(("on_bad_file", "workers"), [("fail", 1), ("skip", 1), ("fail", 2)])
def test_an_expression_naming_a_missing_branch_is_a_configuration_error(
    tmp_path: Path, dataset: Dataset, on_bad_file: str, workers: int
) -> None:
    """With 2 workers, files are counted while the selection's probe runs."""
    config = project_yaml(tmp_path / "project.yaml", 'regions: {pt: "nosuchbranch * 2"}')
    workdir = tmp_path / "work"
    args = [*count_args(workdir, dataset.file_list), "--config", config]
    args[args.index("--workers") + 1] = workers
    line = cli_error(*args, "--on-bad-file", on_bad_file)
    assert line.startswith("error: regions.pt: expression 'nosuchbranch * 2' reads branch"), line
    assert "nosuchbranch" in line and "lacks" in line, line
    # no input file is blamed for it, nor counted: the counts that came before the probe's
    # answer were held, and dropped with it
    catalog = Catalog.open(workdir)
    try:
        records = catalog.files()
        assert records and all(record.status not in ("bad", "counted") for record in records)
    finally:
        catalog.close()
    assert not (workdir / "counts.json").exists()


def test_a_string_in_an_expression_is_refused_as_not_numeric(
    tmp_path: Path, dataset: Dataset
) -> None:
    config = project_yaml(tmp_path / "project.yaml", "regions: {pt: \"tau_pt * 'a'\"}")
    line = cli_error(*count_args(tmp_path / "work", dataset.file_list), "--config", config)
    assert "regions.pt" in line and "numeric" in line, line


def test_numpy_warnings_of_expressions_stay_off_the_terminal(
    tmp_path: Path, dataset: Dataset
) -> None:
    """log of negative numbers and division by zero give NaN and inf, which fall in no bin."""
    config = project_yaml(tmp_path / "project.yaml", 'regions: {pt: "log(tau_pt - 1000) + 1 / 0"}')
    outcome = run_command(
        EXECUTABLE, [*count_args(tmp_path / "work", dataset.file_list), "--config", config]
    )
    assert outcome.returncode == 0, outcome.stderr
    assert "Warning" not in outcome.stderr, outcome.stderr


# -- input lists ----------------------------------------------------------------------------------


def test_one_file_written_two_ways_is_counted_once(tmp_path: Path, dataset: Dataset) -> None:
    first = Path(dataset.paths[0])
    dotted = f"{first.parent}/./{first.name}"
    doubled = f"{first.parent}//{first.name}"
    file_list = tmp_path / "flist.txt"
    file_list.write_text("\n".join([str(first), dotted, doubled, dataset.paths[1]]) + "\n")
    workdir = tmp_path / "work"
    cli(*count_args(workdir, file_list))
    counts = json.loads((workdir / "counts.json").read_text())
    assert counts == expected_counts_json(dataset.paths[:2])


def test_relative_paths_in_a_file_list_are_relative_to_the_list(
    tmp_path: Path, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = tmp_path / "inputs" / CAMPAIGN
    inputs.mkdir(parents=True)
    names = []
    for path in dataset.paths[:2]:
        relative = Path(path).relative_to(Path(dataset.file_list).parent)
        (inputs / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, inputs / relative)
        names.append(f"{CAMPAIGN}/{relative}")
    file_list = tmp_path / "inputs" / "flist.txt"
    file_list.write_text("\n".join(names) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    workdir = tmp_path / "work"
    cli(*count_args(workdir, file_list))
    catalog = Catalog.open(workdir)
    try:
        recorded = [record.path for record in catalog.files()]
    finally:
        catalog.close()
    assert recorded == [str(tmp_path / "inputs" / name) for name in names]
    assert json.loads((workdir / "counts.json").read_text()) == expected_counts_json(recorded)


# -- run bookkeeping ------------------------------------------------------------------------------


def test_status_shows_units_of_a_run_that_died_as_interrupted(counted_copy: Path) -> None:
    cli(*reference_plan_args(counted_copy))
    killed = run_killed_at(
        KillPoint("balanced_batches.catalog:Catalog.mark_running", nth=2, when="after"),
        ["run", "--workdir", counted_copy, "--workers", 1],
    )
    assert killed.killed, killed.stderr
    status = cli("status", "--workdir", counted_copy).stdout
    assert "interrupted" in status, status
    assert "units handed out at" in " ".join(status.split()), status
    resumed = run_command(EXECUTABLE, ["run", "--workdir", counted_copy, "--workers", 1])
    assert resumed.returncode == 0, resumed.stderr
    assert "handed out at" not in cli("status", "--workdir", counted_copy).stdout


# -- check ----------------------------------------------------------------------------------------


def flip_bytes(path: Path) -> None:
    """Inverts 16 bytes at four places in the middle of a file (same size)."""
    data = bytearray(path.read_bytes())
    for fraction in (0.4, 0.5, 0.6, 0.7):
        start = int(len(data) * fraction)
        data[start : start + 4] = bytes(255 - b for b in data[start : start + 4])
    path.write_bytes(bytes(data))


def test_check_names_an_output_with_flipped_bytes_and_never_crashes(counted_copy: Path) -> None:
    workdir = counted_copy
    cli(*reference_plan_args(workdir))
    cli("run", "--workdir", workdir, "--workers", 1)
    damaged = workdir / "batches" / "batch1.root"
    flip_bytes(damaged)
    outcome = run_command(EXECUTABLE, ["check", "--workdir", workdir])
    assert outcome.returncode == 1, outcome.stderr
    assert "Traceback" not in outcome.stderr
    problems = [line for line in outcome.stderr.splitlines() if line.startswith("  ")]
    assert problems and all(line.startswith(f"  {damaged}: ") for line in problems), problems


def test_check_compares_exactly_the_sample_asked_for(reference: Production) -> None:
    result = cli("check", "--workdir", reference.workdir, "--sample", 17)
    assert result.stdout.splitlines()[0] == (
        "checked 3 files, 3528 rows, 17 rows compared with their source entries"
    )


def test_check_reports_its_progress_in_logs(reference: Production) -> None:
    result = cli("check", "--workdir", reference.workdir, "--sample", 0)
    assert "checking outputs: 3 done in" in result.stderr, result.stderr


# -- help -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["count", "plan", "run", "check", "report"])
def test_help_on_an_80_column_terminal_shows_every_option_whole(command: str) -> None:
    environment = {**os.environ, "COLUMNS": "80", "TERM": "xterm"}
    shown = subprocess.run(
        [str(EXECUTABLE), command, "--help"],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
        timeout=60,
    ).stdout
    assert "…" not in shown, shown
    import typer.main

    from balanced_batches.cli import app  # the options typer knows, each must be shown whole

    group = typer.main.get_command(app)
    options = group.commands[command].params  # type: ignore[attr-defined]
    for option in options:
        if option.hidden:
            continue
        for name in option.opts:
            assert name in shown, f"{name} missing from:\n{shown}"
        if option.help:
            assert " ".join(option.help.split()[:3]) in " ".join(shown.split()), option.help
