"""The public Python API: a working directory and one method per pipeline stage.

    import balanced_batches as bb
    wd = bb.Workdir.open("work", config="project.yaml")
    wd.count(workers=2)
    wd.plan(pileup="PU200", events_per_batch_type=15, output_directory="batches")
    wd.run()
    problems = wd.check()          # empty when all is well
    wd.report("report/")

A `Workdir` holds the catalog, the stored configuration, the plan, the scratch directory and
the lock. Every method returns a typed result; user errors raise the exceptions of `errors`
with the one-line messages the command line prints. The command line is a thin layer over
this module.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from .catalog import CATALOG_NAME, Catalog, UnitRow, lock_holder, workdir_lock
from .config import ProjectConfig, load_binning, load_process_types, load_project, with_overrides
from .engines import Engine, ExecutorEngine, Reporter, SilentReporter, make_engine
from .engines.heap import ready_for_work
from .errors import ConfigError
from .stages import WORKER_MODULES, Command

if TYPE_CHECKING:  # the stages import numpy, awkward, uproot: only when a method needs them
    from .plan_model import Plan
    from .stages.check import CheckReport
    from .stages.count import CountOutcome
    from .stages.export import ExportedJobs
    from .stages.plan import SizeEstimate
    from .stages.run import RunOutcome
    from .stages.summary import Summary

PathLike = str | os.PathLike[str]
# where the Dask workers that `--cluster` starts as batch jobs write their output and errors
CLUSTER_LOGS = "cluster-logs"


class _Options(BaseModel):
    """Typed settings of one call; `None` keeps what the configuration says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def overrides(self) -> dict[str, Any]:
        """The settings as `config.with_overrides` takes them (`None`: not given)."""
        return {_KEYS[name]: value for name, value in self if name in _KEYS}


class InputOptions(_Options):
    """What `count` reads (the original `create_database.py` options)."""

    campaign: str | None = None
    file_list: str | None = None
    replace_prefix: str | None = None
    tree: str | None = None
    process_types: str | None = None  # original process_types.yaml
    binning: str | None = None  # original binning.yaml
    splits: dict[str, float] | list[str] | None = None  # {train: 0.8, test: 0.2} (`splits`)
    split_by: list[str] | str | None = None  # identity branches, or a rule
    split_seed: int | None = None


class PlanOptions(_Options):
    """How the batches are planned and written (the original `create_batchjobs.py` options)."""

    pileup: str | None = None
    events_per_batch_type: int | None = None
    batches: int | None = None
    max_reuse: int | None = None
    seed: int | None = None
    output_directory: str | None = None
    batches_per_file: int | None = None
    format: str | None = None
    compression: str | None = None
    overwrite: bool | None = None
    branches: list[str] | None = None  # glob patterns of the branches to write
    drop_branches: list[str] | None = None  # glob patterns of branches to leave out
    weights: bool | None = None  # bb_weight: restores the input spectrum
    type_ratios: dict[str, float] | None = None  # plan.composition.types
    process_ratios: dict[str, float] | None = None  # plan.composition.processes
    spectrum: str | None = None  # plan.composition.spectrum: flat, type:NAME, process:NAME
    campaign: str | None = None
    process_types: str | None = None
    binning: str | None = None


_KEYS = {
    "campaign": "inputs.campaign",
    "file_list": "inputs.file_list",
    "replace_prefix": "inputs.replace_prefix",
    "tree": "inputs.tree",
    "process_types": "process_types",
    "binning": "binning",
    "splits": "plan.splits",
    "split_by": "plan.split_by",
    "split_seed": "plan.split_seed",
    "pileup": "plan.pileup",
    "events_per_batch_type": "plan.events_per_batch_type",
    "batches": "plan.batches",
    "max_reuse": "plan.max_reuse",
    "seed": "plan.seed",
    "output_directory": "output.directory",
    "batches_per_file": "output.batches_per_file",
    "format": "output.format",
    "compression": "output.compression",
    "overwrite": "output.overwrite",
    "branches": "output.branches",
    "drop_branches": "output.drop_branches",
    "weights": "output.weights",
    "type_ratios": "plan.composition.types",
    "process_ratios": "plan.composition.processes",
    "spectrum": "plan.composition.spectrum",
}


@dataclass(frozen=True)
class Execution:
    """Where work runs: `engine` or `executor` if given (the caller owns them), else an
    existing Dask cluster (`scheduler`), Dask workers as batch jobs (`cluster`), local
    worker processes (`workers` > 1, default one per core) or this process (`workers=1`)."""

    workers: int | None = None
    scheduler: str | None = None
    cluster: str | None = None
    engine: Engine | None = None
    executor: concurrent.futures.Executor | None = None


@dataclass(frozen=True)
class Status:
    """What `status` shows: input files by state, the plan's units, who works here now."""

    file_states: dict[str, int]
    bad_files: list[tuple[str, str]]  # (path, reason)
    units: list[UnitRow]
    holder: str | None  # the command holding the working directory, if any
    folded_records: int = 0  # batch-job result records taken into the catalog just now
    records: str | None = None

    def state(self, row: UnitRow) -> str:
        """A unit's state: `running` only while a command holds the working directory, else
        `interrupted` (handed out by a command that is gone)."""
        return "interrupted" if row.status == "running" and self.holder is None else row.status

    def counts(self, kind: str) -> dict[str, int]:
        """Units of a kind by state."""
        states = ("pending", "running", "interrupted", "done", "failed")
        shown = [self.state(row) for row in self.units if row.kind == kind]
        return {state: shown.count(state) for state in states}

    @property
    def interrupted(self) -> list[UnitRow]:
        """Units handed out by a command that is no longer running."""
        return [row for row in self.units if self.state(row) == "interrupted"]

    @property
    def failed(self) -> list[UnitRow]:
        """Units that failed, with their attempts and error."""
        return [row for row in self.units if row.status == "failed"]


@dataclass(frozen=True)
class PlanOutcome:
    """A stored plan with what it will write."""

    plan: Plan
    directory: str
    size: SizeEstimate

    def describe(self) -> str:
        """One line, as `plan` prints it."""
        import numpy as np

        p = self.plan

        def batches(split: int) -> str:
            streams = p.streams_of_split(split)
            takes = p.takes[streams]
            each = (
                f"{len(streams)} regions x {p.per_batch}"
                if np.all(takes == p.per_batch)
                else f"{len(streams)} regions, {int(takes.sum())} in all"
            )
            return f"{int(p.batches_of_split[split])} batches x {each} candidates"

        planned = "; ".join(
            f"{name}: {batches(s)}" if name else batches(s) for s, name in enumerate(p.split_names)
        )
        return (
            f"planned {planned} into {p.n_output_files} files in {self.directory}; "
            f"{len(p.read_files)} read jobs + {p.n_write_units} write jobs"
        )


@dataclass(frozen=True)
class Problems:
    """The outcome of `check`: a sequence of problems (empty when all is well) with what was
    looked at."""

    report: CheckReport

    def __iter__(self) -> Iterator[str]:
        return iter(self.report.problems)

    def __len__(self) -> int:
        return len(self.report.problems)

    def __getitem__(self, index: int) -> str:
        return self.report.problems[index]

    def describe(self) -> str:
        """One line, as `check` prints it."""
        r = self.report
        return (
            f"checked {r.files} files, {r.rows} rows, {r.sampled} rows compared with their "
            "source entries"
        )


class Workdir:
    """A working directory: the catalog, the stored configuration, the plan, the scratch
    directory and the lock. Open one with `Workdir.open`."""

    def __init__(self, path: Path, config_file: Path | None, reporter: Reporter) -> None:
        self.path = path
        self.config_file = config_file
        self.reporter = reporter

    @classmethod
    def open(
        cls,
        path: PathLike,
        config: PathLike | None = None,
        *,
        create: bool = True,
        reporter: Reporter | None = None,
    ) -> Workdir:
        """Opens the working directory at `path`. With `create`, one that does not exist yet
        is made by the first `count` (nothing is written before the settings proved valid);
        without, a missing catalog is a CatalogError. `config`, a project YAML, is read (and
        validated now) by every stage of this object instead of the catalog's stored settings."""
        workdir = Workdir(
            Path(path).resolve(),
            None if config is None else Path(config).resolve(),
            reporter or SilentReporter(),
        )
        if workdir.config_file is not None:
            load_project(workdir.config_file)
        if not create or (workdir.path / CATALOG_NAME).exists():
            Catalog.open(workdir.path).close()  # CatalogError when there is none
        return workdir

    def __repr__(self) -> str:
        return f"Workdir({str(self.path)!r})"

    def catalog(self) -> Catalog:
        """The catalog (a new connection; close it when done)."""
        return Catalog.open(self.path)

    def config(self) -> ProjectConfig:
        """The settings the next `count`, `summary` or `plan` starts from: the project YAML
        if this object was opened with one, else those the last `plan` (or `count`) stored."""
        return self._settings({}, "plan_config")

    def planned_config(self) -> ProjectConfig:
        """The settings the stored plan was made with: `run`, `check`, `report` and the jobs
        follow them whatever the project YAML says now."""
        return self._stored_config("plan_config")

    # -- the stages --------------------------------------------------------------------------

    def count(
        self,
        options: InputOptions | None = None,
        *,
        on_bad_file: str = "fail",
        workers: int | None = None,
        scheduler: str | None = None,
        cluster: str | None = None,
        engine: Engine | None = None,
        executor: concurrent.futures.Executor | None = None,
        **inputs: Any,
    ) -> CountOutcome:
        """Counts candidates per region in new or changed input files; writes counts.json.
        `on_bad_file`: `fail` (stop with the reason after counting the rest) or `skip`
        (record unreadable files with their reason and go on)."""
        from .stages.count import count_inputs

        if on_bad_file not in ("fail", "skip"):
            raise ConfigError(f"--on-bad-file = {on_bad_file!r}: expected fail or skip")
        settings = self._settings(_merged(InputOptions, options, inputs), "config")
        if not settings.processes:
            raise ConfigError("no processes configured: pass --process-types or set 'processes'")
        execution = Execution(workers, scheduler, cluster, engine, executor)
        with workdir_lock(self.path), self._engine("count", execution, settings) as runner:
            catalog = Catalog.open(self.path, create=True)
            try:
                return count_inputs(
                    catalog, settings, runner, self.path, self.reporter, on_bad_file
                )
            finally:
                catalog.close()

    def summary(
        self, options: PlanOptions | None = None, *, write_json: bool = True, **plan: Any
    ) -> Summary:
        """Counts per region and the batches a plan with these settings would give; writes
        summary.json unless `write_json` is false."""
        from .stages.summary import summarize, write_summary_json

        settings = self._settings(_merged(PlanOptions, options, plan), "plan_config")
        with self._catalog() as catalog:
            result = summarize(catalog, settings)
            if write_json:
                write_summary_json(catalog, result, self.path / "summary.json")
        return result

    def plan(self, options: PlanOptions | None = None, **plan: Any) -> PlanOutcome:
        """Plans the balanced batches from the counts and stores the plan."""
        from .stages.plan import plan_batches, plan_size

        settings = self._settings(_merged(PlanOptions, options, plan), "plan_config")
        with self._catalog() as catalog, workdir_lock(self.path):
            stored = plan_batches(catalog, settings, self.path)
            directory = catalog.get_meta("plan_config")["output"]["directory"]
            return PlanOutcome(stored, directory, plan_size(catalog, stored))

    def write_summary_json(self, options: PlanOptions | None = None, **plan: Any) -> Path:
        """Only summary.json, as the original `--summary-only` wrote it."""
        from .io.files import write_json
        from .stages.plan import count_table, summary_json

        settings = self._settings(_merged(PlanOptions, options, plan), "plan_config")
        path = self.path / "summary.json"
        with self._catalog() as catalog:
            table = count_table(catalog, settings, settings.plan.pileup)
            write_json(path, summary_json(table, catalog))
        return path

    def run(
        self,
        *,
        workers: int | None = None,
        scheduler: str | None = None,
        cluster: str | None = None,
        engine: Engine | None = None,
        executor: concurrent.futures.Executor | None = None,
        keep_scratch: bool = False,
        overwrite: bool = False,
        space_check: bool = True,
    ) -> RunOutcome:
        """Makes every planned batch not made yet (resumes an interrupted run)."""
        from .stages.plan import load_plan
        from .stages.run import run_plan

        settings = self.planned_config()
        execution = Execution(workers, scheduler, cluster, engine, executor)
        with self._catalog() as catalog, workdir_lock(self.path):
            stored = load_plan(catalog)
            with self._engine("run", execution, settings) as runner:
                return run_plan(
                    catalog,
                    stored,
                    settings,
                    runner,
                    self.path,
                    self.reporter,
                    keep_scratch=keep_scratch,
                    overwrite=overwrite,
                    space_check=space_check,
                )

    def job_count(self) -> tuple[int, int]:
        """(read jobs, write jobs) of the plan: jobs 0..R-1 read, R..R+W-1 write."""
        from .stages.plan import load_plan

        with self._catalog() as catalog:
            stored = load_plan(catalog)
        return len(stored.read_files), stored.n_write_units

    def make_job(self, job: int) -> str:
        """Runs one unit of the plan as a batch job does (beside other jobs); one line on it."""
        from .stages.plan import load_plan
        from .stages.run import run_job

        with workdir_lock(self.path, shared=True), self._catalog() as catalog:
            stored = load_plan(catalog)
            settings = self.planned_config()
            ready_for_work()
            return run_job(catalog, stored, settings, self.path, job)

    def export_jobs(
        self,
        directory: PathLike = "jobs",
        system: str = "htcondor",
        *,
        only_missing: bool = False,
        overwrite: bool = False,
        keep_scratch: bool = False,
    ) -> ExportedJobs:
        """Submit files that run the plan as HTCondor or Slurm jobs (`keep_scratch`: the last
        write job leaves the intermediate parts)."""
        from .stages.export import export_plan

        with self._catalog() as catalog:
            return export_plan(
                catalog,
                self.planned_config(),
                self.path,
                Path(directory).resolve(),
                system,
                only_missing=only_missing,
                overwrite=overwrite,
                keep_scratch=keep_scratch,
            )

    def status(self) -> Status:
        """Input files by state, the plan's units, and result records of batch jobs."""
        from .stages.export import fold_records

        config = self.planned_config()
        with self._catalog() as catalog:
            exported = catalog.get_meta("export")
            folded, records = 0, None
            if exported is not None:
                records = exported["records"]
                folded = fold_records(catalog, records, config)
            files = catalog.files()
            states: dict[str, int] = {}
            for record in files:
                states[record.status] = states.get(record.status, 0) + 1
            bad = [(r.path, r.error or "") for r in files if r.status == "bad"]
            return Status(states, bad, catalog.unit_rows(), lock_holder(self.path), folded, records)

    def check(self, sample: int = 1000) -> Problems:
        """Verifies the outputs against the plan and their sources; empty when all is well."""
        from .stages.check import check_outputs
        from .stages.plan import load_plan

        with self._catalog() as catalog:
            report = check_outputs(
                catalog, load_plan(catalog), self.planned_config(), sample, self.reporter
            )
        return Problems(report)

    def report(
        self,
        directory: PathLike | None = None,
        *,
        overwrite: bool = False,
        input_only: bool = False,
        options: PlanOptions | None = None,
    ) -> Path:
        """Plots and one HTML page of the counts, the plan and the outputs; its path.
        `input_only`: the counts alone, with the settings of `options` (as `summary` takes
        them) instead of the stored plan's."""
        from .stages.report import write_report

        if input_only:
            settings = self._settings(_merged(PlanOptions, options, {}), "plan_config")
        else:
            settings = self.planned_config()
        target = Path(directory or self.path / "report").resolve()
        with self._catalog() as catalog:
            return write_report(
                catalog,
                settings,
                target,
                overwrite=overwrite,
                input_only=input_only,
                reporter=self.reporter,
            )

    # -- helpers ----------------------------------------------------------------------------

    def _catalog(self) -> _ClosingCatalog:
        return _ClosingCatalog(self.path)

    def _settings(self, overrides: dict[str, Any], stored: str) -> ProjectConfig:
        """The project YAML if given, else what the catalog stored, then `overrides`."""
        if self.config_file is not None:
            config = load_project(self.config_file)
        elif (self.path / CATALOG_NAME).exists():
            config = self._stored_config(stored)
        else:
            config = ProjectConfig()
        return _with_original_files(config, overrides)

    def _stored_config(self, key: str) -> ProjectConfig:
        """The settings the catalog stored under `key` (`plan_config`: by the last plan), else
        those of the last count, else the defaults."""
        with self._catalog() as catalog:
            kept = catalog.get_meta(key) or catalog.get_meta("config")
        return ProjectConfig.model_validate(kept) if kept else ProjectConfig()

    def _engine(self, command: Command, execution: Execution, config: ProjectConfig) -> _Engine:
        return _Engine(command, execution, config, self.path / CLUSTER_LOGS)


def run_exported_job(spec: PathLike, job: int) -> str:
    """Runs job `job` of a specification that `export_jobs` wrote, as a batch job does: no
    catalog, no working directory, only the specification's files. One line on it."""
    from .stages.run import run_spec_job
    from .stages.units import JobSpec

    job_spec = JobSpec.load(Path(spec))
    ready_for_work()
    return run_spec_job(job_spec, job)


def _merged(
    model: type[_Options], options: _Options | None, fields: dict[str, Any]
) -> dict[str, Any]:
    """The overrides of `options` updated with keyword `fields` (validated by `model`)."""
    base = options.model_dump() if options is not None else {}
    try:
        merged = model(**{**base, **{k: v for k, v in fields.items() if v is not None}})
    except ValueError as err:
        raise ConfigError(str(err).splitlines()[0] + ": " + _first_error(err)) from None
    values = merged.overrides()
    for key in ("inputs.file_list", "output.directory", "process_types", "binning"):
        if values.get(key) is not None:
            values[key] = _resolved(values[key])
    return values


def _first_error(err: ValueError) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(map(str, first['loc']))} = {first.get('input')!r}: {first['msg']}"
    return str(err)


def _resolved(path: str) -> str:
    """Local paths made absolute (against the current directory); URLs as they are."""
    return path if "://" in path else str(Path(path).resolve())


def _with_original_files(config: ProjectConfig, overrides: dict[str, Any]) -> ProjectConfig:
    """`overrides` applied; `process_types` and `binning` name the original YAML files."""
    overrides = dict(overrides)
    process_types = overrides.pop("process_types", None)
    if process_types is not None:
        processes = load_process_types(Path(process_types))
        for name, spec in processes.items():
            for type_name in spec.active_types:
                if type_name not in config.types:
                    raise ConfigError(
                        f"{process_types}: key '{name}.active_types' = {type_name!r}: unknown "
                        f"type; defined types: {', '.join(config.types)}"
                    )
        overrides["processes"] = {name: spec.model_dump() for name, spec in processes.items()}
    binning = overrides.pop("binning", None)
    if binning is not None:
        overrides["binning"] = load_binning(Path(binning)).model_dump()
    return with_overrides(config, overrides, "command line")


class _ClosingCatalog:
    """`with` block over a catalog connection."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Catalog:
        self.catalog = Catalog.open(self.path)
        return self.catalog

    def __exit__(self, *exc: object) -> None:
        self.catalog.close()


class _Engine:
    """`with` block over the engine of a call: made as `Execution` says, closed after unless
    the caller passed it."""

    def __init__(
        self, command: Command, execution: Execution, config: ProjectConfig, cluster_logs: Path
    ) -> None:
        self.command = command
        self.execution = execution
        self.config = config
        self.cluster_logs = cluster_logs

    def __enter__(self) -> Engine:
        e = self.execution
        self.owned = e.engine is None and e.executor is None
        if e.engine is not None:
            self.engine: Engine = e.engine
        elif e.executor is not None:
            self.engine = ExecutorEngine(e.executor)
        else:
            workers = e.workers or self.config.execution.workers or os.cpu_count()
            self.engine = make_engine(
                workers,
                e.scheduler,
                e.cluster,
                self.config.batch,
                WORKER_MODULES[self.command],
                run_main_script=False,  # the pipeline's functions only: any script may call us
                cluster_logs=self.cluster_logs,
            )
        ready_for_work()
        return self.engine

    def __exit__(self, *exc: object) -> None:
        if self.owned:
            self.engine.close()


__all__ = [
    "Execution",
    "InputOptions",
    "PlanOptions",
    "PlanOutcome",
    "Problems",
    "Status",
    "Workdir",
    "run_exported_job",
]
