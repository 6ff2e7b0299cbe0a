"""The public Python API, called as a notebook or a workflow system calls it: no CliRunner.

The README's example runs as written (in a project directory holding `project.yaml`); its
outputs equal the command line's byte for byte; every engine, including a caller's own
`concurrent.futures` executor, makes the same files; user errors raise the exceptions of
`balanced_batches.errors` with the messages the command line prints.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import balanced_batches as bb
from balanced_batches.engines import InProcessEngine
from conftest import (
    BINNING,
    CAMPAIGN,
    PER_BATCH,
    PILEUP,
    PROCESS_TYPES,
    SEED,
    Dataset,
    Production,
    expected_counts_json,
    python_output,
)
from faults_util import output_digests


def write_project(directory: Path, dataset: Dataset) -> Path:
    """project.yaml of the reference production, paths relative to it where they can be."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "project.yaml"
    path.write_text(
        f"processes: {PROCESS_TYPES}\n"
        f"binning: {BINNING}\n"
        f"inputs: {{file_list: {dataset.file_list}, campaign: {CAMPAIGN}}}\n"
        f"plan: {{seed: {SEED}, batches: 3}}\n"
        "execution: {workers: 1}\n"
    )
    return path


def test_the_readme_example_runs_as_written_and_matches_the_command_line(
    tmp_path: Path, dataset: Dataset, reference: Production
) -> None:
    project = tmp_path / "project"
    write_project(project, dataset)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = re.search(r"```python\n(import balanced_batches as bb\n.*?)```", readme, re.S)
    assert example, "the README has no Python API example"
    code = example[1].replace("events_per_batch_type=15", f"events_per_batch_type={PER_BATCH}")
    code = code.replace('pileup="PU200"', f'pileup="{PILEUP}"')
    script = project / "example.py"
    script.write_text(code + "\nprint(len(problems))\n")
    here = os.getcwd()
    os.chdir(project)
    try:
        printed = python_output(str(script), timeout=300)
    finally:
        os.chdir(here)
    assert printed.splitlines()[-1] == "0"
    assert output_digests(project / "batches") == output_digests(reference.outdir)
    assert (project / "report" / "report.html").is_file()


def test_every_stage_returns_a_typed_result(tmp_path: Path, dataset: Dataset) -> None:
    wd = bb.Workdir.open(tmp_path / "work", config=write_project(tmp_path, dataset))
    counted = wd.count(workers=1)
    assert (counted.counted, counted.unchanged, counted.failed) == (12, 0, [])
    assert wd.count(workers=1).unchanged == 12
    catalog = wd.catalog()
    try:  # count records the branch layout: the plan's jobs are whole before any read ran
        assert catalog.get_meta("layout") is not None
    finally:
        catalog.close()

    summary = wd.summary(pileup=PILEUP, events_per_batch_type=PER_BATCH)
    assert summary.per_batch == PER_BATCH and summary.n_batches == 3
    assert (wd.path / "summary.json").is_file()

    planned = wd.plan(bb.PlanOptions(pileup=PILEUP, events_per_batch_type=PER_BATCH))
    assert planned.plan.n_batches == 3 and planned.plan.per_batch == PER_BATCH
    assert planned.directory == str(wd.path / "batches")
    assert planned.size.output_bytes > 0
    assert wd.job_count() == (12, 3)

    status = wd.status()
    assert status.file_states == {"counted": 12}
    assert status.counts("read") == {
        "pending": 12,
        "running": 0,
        "interrupted": 0,
        "done": 0,
        "failed": 0,
    }

    made = wd.run(workers=1)
    assert [o["index"] for o in made.outputs] == [0, 1, 2]
    assert sum(o["entries"] for o in made.outputs) == 3 * 588 * PER_BATCH
    assert wd.status().counts("write")["done"] == 3

    problems = wd.check(sample=50)
    assert len(problems) == 0 and list(problems) == []
    assert problems.report.sampled == 50
    assert wd.report().name == "report.html"

    counts = (wd.path / "counts.json").read_text()
    assert json.loads(counts) == expected_counts_json(dataset.paths)


@pytest.fixture(params=["in-process", "processes", "executor", "dask"])
def execution(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Keyword arguments of `count` and `run` for every engine: this process, local worker
    processes, a caller's spawn ProcessPoolExecutor, a local Dask cluster."""
    if request.param == "in-process":
        yield {"engine": InProcessEngine()}
    elif request.param == "processes":
        yield {"workers": 2}
    elif request.param == "executor":
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as executor:
            yield {"executor": executor}
    else:
        from balanced_batches.engines.dask import DaskEngine

        dask_engine = DaskEngine(workers=2)
        try:
            yield {"engine": dask_engine}
        finally:
            dask_engine.close()


def test_every_engine_counts_and_makes_the_same_files(
    tmp_path: Path, dataset: Dataset, reference: Production, execution: dict[str, Any]
) -> None:
    wd = bb.Workdir.open(tmp_path / "work", config=write_project(tmp_path, dataset))
    assert wd.count(**execution).counted == 12
    assert json.loads((wd.path / "counts.json").read_text()) == expected_counts_json(dataset.paths)
    wd.plan(pileup=PILEUP, events_per_batch_type=PER_BATCH)
    wd.run(**execution)
    assert output_digests(wd.path / "batches") == output_digests(reference.outdir)
    assert len(wd.check(sample=20)) == 0


def test_user_errors_raise_the_command_lines_one_line_messages(
    tmp_path: Path, dataset: Dataset
) -> None:
    with pytest.raises(bb.CatalogError, match="no catalog"):
        bb.Workdir.open(tmp_path / "nowhere", create=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("plan: {pileup: PU999}\n")
    with pytest.raises(bb.ConfigError, match=r"bad\.yaml: key 'plan\.pileup'"):
        bb.Workdir.open(tmp_path / "work", config=bad)

    wd = bb.Workdir.open(tmp_path / "work", config=write_project(tmp_path, dataset))
    with pytest.raises(bb.ConfigError, match="on-bad-file"):
        wd.count(on_bad_file="ignore")
    with pytest.raises(bb.ConfigError, match="nosuchoption"):
        wd.plan(nosuchoption=1)
    wd.count(workers=1)
    with pytest.raises(bb.ConfigError, match="zstd levels go from 0 to 22"):
        wd.plan(pileup=PILEUP, events_per_batch_type=PER_BATCH, compression="zstd:99")
    with pytest.raises(bb.CatalogError, match="no plan"):
        wd.run(workers=1)
    assert not (tmp_path / "work" / "batches").exists()


def test_exported_jobs_run_through_the_library_make_the_same_files(
    tmp_path: Path, dataset: Dataset, reference: Production
) -> None:
    """What a batch job runs (`make --spec`), called as a workflow system would: every read
    job, then every write job, from the exported specification alone; `status` folds their
    records in and `check` passes."""
    wd = bb.Workdir.open(tmp_path / "work", config=write_project(tmp_path, dataset))
    wd.count(workers=1)
    wd.plan(pileup=PILEUP, events_per_batch_type=PER_BATCH)
    exported = wd.export_jobs(tmp_path / "jobs", "slurm")
    for job in [*exported.read_jobs, *exported.write_jobs]:
        assert bb.run_exported_job(exported.directory / "spec.json", job)
    assert output_digests(wd.path / "batches") == output_digests(reference.outdir)
    assert wd.status().counts("write")["done"] == len(exported.write_jobs)
    assert len(wd.check(sample=20)) == 0
    with pytest.raises(bb.CatalogError, match="--job 10000: this plan has jobs 0 to 14"):
        bb.run_exported_job(exported.directory / "spec.json", 10_000)
