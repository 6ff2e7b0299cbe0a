"""The `balanced-batches` command: one subcommand per stage, each a thin call into the library."""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from . import __version__
from .catalog import lock_holder, workdir_lock
from .errors import BalancedBatchesError, CheckFailed, ConfigError
from .stages import WORKER_MODULES, Command

log = logging.getLogger(__name__)
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Balanced, shuffled training files from many ROOT n-tuples.\n\n"
    "Pipeline: count -> summary -> plan -> run (or make --job) -> check.",
)
F = TypeVar("F", bound=Callable[..., Any])

WorkdirOption = Annotated[
    Path, typer.Option("--workdir", "-w", help="Working directory holding the catalog.")
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Project YAML (see README).")
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
ClusterOption = Annotated[
    str | None,
    typer.Option(help="htcondor or slurm: Dask workers as batch jobs (--workers of them)."),
]
OverwriteOption = Annotated[
    bool,
    typer.Option("--overwrite", help="Replace files that balanced-batches did not write."),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "--parallel",
        min=1,
        help="Local worker processes (default: one per core); with --cluster, batch jobs.",
    ),
]


# what the file system answers when it is full, read-only, or not the user's to write
ENVIRONMENT_ERRORS = frozenset(
    {
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EACCES,
        errno.EPERM,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.ENAMETOOLONG,
        errno.EIO,
    }
)


def user_errors(command: F) -> F:
    """Turns user-caused errors into one line on stderr and exit code 2 (1 for failed checks)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .display import configure_logging

        configure_logging(bool(kwargs.get("verbose")))
        try:
            return command(*args, **kwargs)
        except CheckFailed as err:
            typer.echo(f"check failed: {err}", err=True)
            raise typer.Exit(1) from None
        except BalancedBatchesError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        except OSError as err:
            if err.errno not in ENVIRONMENT_ERRORS:
                raise  # a programming error: its traceback is wanted
            where = f"{err.filename}: " if err.filename else ""
            typer.echo(f"error: {where}{err.strerror or err}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: rerun the same command to resume", err=True)
            raise typer.Exit(130) from None
        finally:
            if "balanced_batches.remote" in sys.modules:
                sys.modules["balanced_batches.remote"].release_connections()
            if "balanced_batches.engines.worker_server" in sys.modules:
                # started early, and the command ended before its engine took it over
                sys.modules["balanced_batches.engines.worker_server"].stop()

    return wrapper  # type: ignore[return-value]


def _resolved(path: str | Path | None) -> str | None:
    if path is None:
        return None
    text = str(path)
    return text if "://" in text else str(Path(text).resolve())


def resolve_config(
    workdir: Path, config_file: Path | None, overrides: dict[str, Any], stored_key: str = "config"
) -> Any:
    """The project YAML if given, else what the catalog stored, then command-line overrides."""
    from .catalog import CATALOG_NAME, Catalog
    from .config import (
        ProjectConfig,
        load_binning,
        load_process_types,
        load_project,
        with_overrides,
    )

    if config_file is not None:
        config = load_project(config_file)
    elif (workdir / CATALOG_NAME).exists():
        catalog = Catalog.open(workdir)
        stored = catalog.get_meta(stored_key) or catalog.get_meta("config")
        catalog.close()
        config = ProjectConfig.model_validate(stored) if stored else ProjectConfig()
    else:
        config = ProjectConfig()
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


_ONE_COMMAND_PER_PROCESS = False  # set by `main`, the entry point of the command line


def _start_local_workers(
    command: Command, workers: int | None, scheduler: str | None, cluster: str | None
) -> None:
    """Starts what local workers fork from before the command reads its configuration, so
    that their imports overlap this process's start-up (see `engines.worker_server`)."""
    if scheduler is None and cluster is None and workers != 1:
        from .engines import worker_server

        worker_server.start(WORKER_MODULES[command])


def _engine(
    command: Command,
    workers: int | None,
    config: Any,
    scheduler: str | None = None,
    cluster: str | None = None,
) -> Any:
    """The engine of a command whose pipeline modules are imported."""
    from .engines import make_engine

    workers = workers or config.execution.workers or os.cpu_count()
    engine = make_engine(workers, scheduler, cluster, config.batch, WORKER_MODULES[command])
    _ready_for_work()
    return engine


def _ready_for_work() -> None:
    """Freezes what lives now (see `engines.heap`), for the work this process does itself;
    only in a process that exits after the command: a test runner or a notebook that calls
    the app again and again keeps its collector as it is."""
    if _ONE_COMMAND_PER_PROCESS:
        from .engines.heap import freeze_long_lived

        freeze_long_lived()


@app.command()
@user_errors
def generate(
    output_dir: Annotated[Path, typer.Argument(help="Directory for the dataset and flist.txt.")],
    files_per_sample: Annotated[int, typer.Option(min=1)] = 1,
    entries_per_file: Annotated[int, typer.Option(min=1)] = 1000,
    seed: int = 1,
    compression: str = "zstd",
    max_samples: Annotated[int | None, typer.Option(min=1, help="Keep only K samples.")] = None,
    like_file_list: Annotated[
        Path | None, typer.Option(help="Make exactly the files of this CMS file list.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1)] = os.cpu_count() or 1,
    verbose: VerboseOption = False,
) -> None:
    """A synthetic TauTuple dataset (CMS crab layout) and its file list."""
    from .display import RichReporter
    from .generate import GenerateOptions, generate_dataset

    options = GenerateOptions(
        output_dir=output_dir.resolve(),
        files_per_sample=files_per_sample,
        entries_per_file=entries_per_file,
        seed=seed,
        compression=compression,
        max_samples=max_samples,
        like_file_list=like_file_list,
    )
    file_list = generate_dataset(options, workers=workers, reporter=RichReporter())
    typer.echo(f"file list: {file_list}")


@app.command()
@user_errors
def count(
    workdir: WorkdirOption = Path("."),
    config: ConfigOption = None,
    prod_campaign: Annotated[
        str | None, typer.Option(help="Campaign: file names start here.")
    ] = None,
    process_types: Annotated[Path | None, typer.Option(help="Original process_types.yaml.")] = None,
    pt_abseta_bins: Annotated[Path | None, typer.Option(help="Original binning.yaml.")] = None,
    input_file_list: Annotated[
        Path | None, typer.Option(help="Text file, one path per line.")
    ] = None,
    replace_file_prefix: Annotated[str | None, typer.Option(help="OLD@NEW for every path.")] = None,
    tree: Annotated[str | None, typer.Option(help="Tree name (default taus).")] = None,
    workers: WorkersOption = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address.")] = None,
    cluster: ClusterOption = None,
    on_bad_file: Annotated[str, typer.Option(help="fail or skip.")] = "fail",
    recompute_infos: Annotated[bool, typer.Option(hidden=True)] = False,
    files_per_job: Annotated[int | None, typer.Option(hidden=True)] = None,
    verbose: VerboseOption = False,
) -> None:
    """Count candidates per region in new or changed input files."""
    _start_local_workers("count", workers, scheduler, cluster)
    from .catalog import Catalog
    from .display import RichReporter

    if on_bad_file not in ("fail", "skip"):
        raise ConfigError(f"--on-bad-file = {on_bad_file!r}: expected fail or skip")
    del recompute_infos, files_per_job  # original options: counting is always incremental here
    workdir = workdir.resolve()
    settings = resolve_config(
        workdir,
        config,
        {
            "inputs.campaign": prod_campaign,
            "inputs.file_list": _resolved(input_file_list),
            "inputs.replace_prefix": replace_file_prefix,
            "inputs.tree": tree,
            "process_types": process_types,
            "binning": pt_abseta_bins,
        },
    )
    if not settings.processes:
        raise ConfigError("no processes configured: pass --process-types or set 'processes'")
    from .stages.count import count_inputs

    with workdir_lock(workdir):
        catalog = Catalog.open(workdir, create=True)
        engine = _engine("count", workers, settings, scheduler, cluster)
        try:
            outcome = count_inputs(catalog, settings, engine, workdir, RichReporter(), on_bad_file)
        finally:
            engine.close()
    typer.echo(
        f"counted {outcome.counted} files, {outcome.unchanged} unchanged, "
        f"{len(outcome.failed)} unreadable, {len(outcome.unmatched)} matching no process; "
        f"{workdir / 'counts.json'}"
    )


def _plan_overrides(
    pileup: str | None,
    events_per_batch_type: int | None,
    batches: int | None,
    max_reuse: int | None,
) -> dict[str, Any]:
    return {
        "plan.pileup": pileup,
        "plan.events_per_batch_type": events_per_batch_type,
        "plan.batches": batches,
        "plan.max_reuse": max_reuse,
    }


PileupOption = Annotated[str | None, typer.Option(help="NoPU, PU140, PU200, all or none.")]
PerBatchOption = Annotated[
    int | None, typer.Option(help="N: candidates of every region in every batch.")
]
BatchesOption = Annotated[int | None, typer.Option(help="Number of batches (default: int(max/N)).")]
MaxReuseOption = Annotated[int | None, typer.Option(help="Use no candidate more than R times.")]


@app.command()
@user_errors
def summary(
    workdir: WorkdirOption = Path("."),
    config: ConfigOption = None,
    pileup: PileupOption = None,
    events_per_batch_type: PerBatchOption = None,
    batches: BatchesOption = None,
    max_reuse: MaxReuseOption = None,
    reuse: Annotated[bool, typer.Option("--reuse", help="Show reuse factors, not counts.")] = False,
    plots: Annotated[
        bool, typer.Option("--plots", help="Also write the report's input part to WORKDIR/report.")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Counts per region, and the batches a plan would give."""
    from .catalog import Catalog
    from .display import batches_line, stdout, summary_tables
    from .stages.summary import summarize, write_summary_json

    workdir = workdir.resolve()
    settings = resolve_config(
        workdir,
        config,
        _plan_overrides(pileup, events_per_batch_type, batches, max_reuse),
        stored_key="plan_config",
    )
    catalog = Catalog.open(workdir)
    result = summarize(catalog, settings)
    for table in summary_tables(result, reuse):
        stdout.print(table)
    for _path, error in result.bad_files:
        stdout.print(f"[red]skipped[/] {escape(error)}", soft_wrap=True)
    for path in result.unmatched_files:
        stdout.print(f"[yellow]matches no process[/] {escape(path)}", soft_wrap=True)
    stdout.print(batches_line(result))
    write_summary_json(catalog, result, workdir / "summary.json")
    stdout.print(f"summary: {escape(str(workdir / 'summary.json'))}")
    if plots:
        from .stages.report import write_report

        html = write_report(catalog, settings, workdir / "report", input_only=True)
        stdout.print(f"report: {escape(str(html))}", soft_wrap=True)


@app.command()
@user_errors
def plan(
    workdir: WorkdirOption = Path("."),
    config: ConfigOption = None,
    pileup: PileupOption = None,
    events_per_batch_type: PerBatchOption = None,
    batches: BatchesOption = None,
    max_reuse: MaxReuseOption = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of the plan and shuffles.")] = None,
    output_directory: Annotated[str | None, typer.Option(help="Where batches go.")] = None,
    batches_per_file: Annotated[
        int | None, typer.Option(min=1, help="Batches in each output file (default 1).")
    ] = None,
    output_format: Annotated[
        str | None, typer.Option("--format", help="root, rntuple or parquet.")
    ] = None,
    compression: Annotated[
        str | None, typer.Option(help="e.g. zstd:5, lz4:4, zlib:1, none.")
    ] = None,
    summary_only: Annotated[
        bool, typer.Option("--summary-only", help="Only write summary.json.")
    ] = False,
    overwrite: OverwriteOption = False,
    prod_campaign: Annotated[str | None, typer.Option(hidden=True)] = None,
    process_types: Annotated[Path | None, typer.Option(help="Original process_types.yaml.")] = None,
    pt_abseta_bins: Annotated[Path | None, typer.Option(help="Original binning.yaml.")] = None,
    jobconfigs_directory: Annotated[Path | None, typer.Option(hidden=True)] = None,
    verbose: VerboseOption = False,
) -> None:
    """Plan the balanced batches from the counts."""
    from .catalog import Catalog
    from .stages.plan import count_table, plan_batches, plan_size, summary_json
    from .storage import write_json

    workdir = workdir.resolve()
    if jobconfigs_directory is not None:
        log.info("--jobconfigs-directory is not needed: the plan is kept in the catalog")
    overrides = _plan_overrides(pileup, events_per_batch_type, batches, max_reuse)
    overrides.update(
        {
            "plan.seed": seed,
            "output.directory": _resolved(output_directory),
            "output.batches_per_file": batches_per_file,
            "output.format": output_format,
            "output.compression": compression,
            "output.overwrite": True if overwrite else None,
            "inputs.campaign": prod_campaign,
            "process_types": process_types,
            "binning": pt_abseta_bins,
        }
    )
    settings = resolve_config(workdir, config, overrides, stored_key="plan_config")
    catalog = Catalog.open(workdir)
    if summary_only:
        table = count_table(catalog, settings, settings.plan.pileup)
        write_json(workdir / "summary.json", summary_json(table, catalog))
        typer.echo(f"summary: {workdir / 'summary.json'}")
        return
    with workdir_lock(workdir):
        result = plan_batches(catalog, settings, workdir)
    directory = catalog.get_meta("plan_config")["output"]["directory"]  # as the plan resolved it
    typer.echo(
        f"planned {result.n_batches} batches x {result.n_streams} regions x {result.per_batch}"
        f" candidates into {result.n_output_files} files in {directory}; "
        f"{len(result.read_files)} read jobs + {result.n_write_units} write jobs"
    )
    typer.echo(f"the plan will write {plan_size(catalog, result).describe()}")


@app.command()
@user_errors
def run(
    workdir: WorkdirOption = Path("."),
    workers: WorkersOption = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address.")] = None,
    cluster: ClusterOption = None,
    keep_scratch: Annotated[
        bool, typer.Option("--keep-scratch", help="Keep the intermediate parts.")
    ] = False,
    overwrite: OverwriteOption = False,
    no_space_check: Annotated[
        bool,
        typer.Option("--no-space-check", help="Start even if the disks look too full."),
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Make every planned batch (resumes an interrupted run)."""
    _start_local_workers("run", workers, scheduler, cluster)
    from .catalog import Catalog
    from .display import RichReporter

    workdir = workdir.resolve()
    catalog = Catalog.open(workdir)
    settings = resolve_config(workdir, None, {}, stored_key="plan_config")
    from .stages.plan import load_plan
    from .stages.run import run_plan

    with workdir_lock(workdir):
        engine = _engine("run", workers, settings, scheduler, cluster)
        try:
            stored_plan = load_plan(catalog)
            outcome = run_plan(
                catalog,
                stored_plan,
                settings,
                engine,
                workdir,
                RichReporter(),
                keep_scratch=keep_scratch,
                overwrite=overwrite,
                space_check=not no_space_check,
            )
        finally:
            engine.close()
    entries = sum(o["entries"] for o in outcome.outputs)
    typer.echo(f"{len(outcome.outputs)} files, {entries} entries in {outcome.directory}")


@app.command()
@user_errors
def make(
    job: Annotated[
        int | None, typer.Option(help="Run this one job (read jobs first, then write jobs).")
    ] = None,
    list_jobs: Annotated[bool, typer.Option("--list", help="List the jobs of the plan.")] = False,
    spec: Annotated[
        Path | None, typer.Option(help="Job specification from export-jobs (no catalog needed).")
    ] = None,
    workdir: WorkdirOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Run one unit of the plan as a batch job does, or list them."""
    from .catalog import Catalog
    from .jobs import JobSpec
    from .stages.plan import load_plan
    from .stages.run import run_job, run_spec_job

    if spec is not None:
        job_spec = JobSpec.load(spec)
        if job is None:
            raise ConfigError("--spec needs --job")
        _ready_for_work()
        typer.echo(run_spec_job(job_spec, job))
        return
    workdir = workdir.resolve()
    if list_jobs or job is None:
        stored_plan = load_plan(Catalog.open(workdir))
        n_reads, n_writes = len(stored_plan.read_files), stored_plan.n_write_units
        typer.echo(f"jobs 0-{n_reads - 1}: read one input file each (any order, in parallel)")
        typer.echo(f"jobs {n_reads}-{n_reads + n_writes - 1}: write output files (after all reads)")
        return
    with workdir_lock(workdir, shared=True):  # the plan cannot change under a running job
        catalog = Catalog.open(workdir)
        stored_plan = load_plan(catalog)
        settings = resolve_config(workdir, None, {}, stored_key="plan_config")
        _ready_for_work()
        typer.echo(run_job(catalog, stored_plan, settings, workdir, job))


@app.command("export-jobs")
@user_errors
def export_jobs_command(
    system: Annotated[str, typer.Option(help="htcondor or slurm.")] = "htcondor",
    directory: Annotated[Path, typer.Option(help="Where submit files go.")] = Path("jobs"),
    only_missing: Annotated[
        bool, typer.Option("--only-missing", help="Only jobs not finished yet.")
    ] = False,
    overwrite: OverwriteOption = False,
    workdir: WorkdirOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Submit files that run the plan as HTCondor or Slurm jobs."""
    from .catalog import Catalog
    from .engines.batch import export_jobs, fold_records
    from .jobs import spec_from_catalog
    from .remote import output_directory
    from .stages.make import output_names
    from .stages.plan import load_plan
    from .stages.run import claim_outputs, reopen_lost_outputs
    from .storage import branch_layout, opened_tree

    workdir = workdir.resolve()
    directory = directory.resolve()
    catalog = Catalog.open(workdir)
    stored_plan = load_plan(catalog)
    settings = resolve_config(workdir, None, {}, stored_key="plan_config")
    records = directory / "records"
    job_spec = spec_from_catalog(catalog, stored_plan, settings, workdir)
    if only_missing:
        if records.is_dir():
            fold_records(catalog, records)
        reopen_lost_outputs(catalog, Path(job_spec.scratch))
    if job_spec.layout is None:
        first = job_spec.files[int(stored_plan.read_files[0])].path
        with opened_tree(first, settings.inputs.tree) as tree:
            layout = branch_layout(tree, first)
        job_spec = dataclasses.replace(job_spec, layout=layout)
    job_spec = dataclasses.replace(job_spec, records=str(records))
    names = output_names(settings.output.name, settings.output.format, stored_plan.n_output_files)
    claim_outputs(catalog, output_directory(settings.output.directory), names, settings, overwrite)
    pending = None
    if only_missing:
        n_reads = len(stored_plan.read_files)
        states = catalog.unit_states("read")
        pending = {unit for unit in range(n_reads) if states.get(unit) != "done"}
        states = catalog.unit_states("write")
        pending |= {n_reads + unit for unit, state in states.items() if state != "done"}
    exported = export_jobs(job_spec, system, directory, pending)
    catalog.set_meta("export", {"directory": str(directory), "records": str(records)})
    typer.echo(
        f"{len(exported.read_jobs)} read jobs and {len(exported.write_jobs)} write jobs in "
        f"{exported.directory}; submit with: {exported.submit_command}"
    )


@app.command()
@user_errors
def status(
    workdir: WorkdirOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """What is done, what failed and why."""
    from rich.table import Table

    from .catalog import Catalog
    from .display import stdout
    from .engines.batch import fold_records

    catalog = Catalog.open(workdir.resolve())
    exported = catalog.get_meta("export")
    if exported is not None and Path(exported["records"]).is_dir():
        folded = fold_records(catalog, Path(exported["records"]))
        if folded:
            stdout.print(f"took {folded} batch-job records from {escape(exported['records'])}")
    files = catalog.files()
    file_states: dict[str, int] = {}
    for record in files:
        file_states[record.status] = file_states.get(record.status, 0) + 1
    stdout.print("input files: " + ", ".join(f"{n} {state}" for state, n in file_states.items()))
    for record in files:
        if record.status == "bad":
            stdout.print(f"  [red]bad[/] {escape(record.error or '')}", soft_wrap=True)
    rows = catalog.unit_rows()
    if not rows:
        stdout.print("no plan: run 'balanced-batches plan'")
        return
    holder = lock_holder(workdir.resolve())
    table = Table(title="jobs", title_justify="left")
    columns = ("pending", "running", "interrupted", "done", "failed")
    for column in ("kind", *columns):
        table.add_column(column, justify="right")
    shown = [(row, _shown_state(row.status, holder)) for row in rows]
    for kind in ("read", "write"):
        states = [state for row, state in shown if row.kind == kind]
        table.add_row(kind, *(str(states.count(state)) for state in columns))
    stdout.print(table)
    if holder is not None and any(state == "running" for _, state in shown):
        stdout.print(f"in progress: {escape(holder)}")
    interrupted = [row for row, state in shown if state == "interrupted"]
    if interrupted:
        last = max(row.started or "" for row in interrupted)
        stdout.print(
            f"  [yellow]interrupted[/] {len(interrupted)} units handed out at {last or 'unknown'}"
            " by a command that is no longer running; 'run' redoes them"
        )
    for row in rows:
        if row.status == "failed":
            stdout.print(
                f"  [red]failed[/] {row.kind} unit {row.unit} ({row.attempts} attempts): "
                + escape(row.error or ""),
                soft_wrap=True,
            )


def _shown_state(status: str, holder: str | None) -> str:
    """A unit's state as `status` shows it: `running` only while a command holds the
    working directory (else it was interrupted)."""
    return "interrupted" if status == "running" and holder is None else status


@app.command()
@user_errors
def check(
    workdir: WorkdirOption = Path("."),
    sample: Annotated[
        int, typer.Option(min=0, help="Rows compared with their source entry.")
    ] = 1000,
    with_report: Annotated[
        bool, typer.Option("--report", help="After a successful check, write WORKDIR/report.")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Verify the outputs against the plan and their sources."""
    from .catalog import Catalog
    from .display import RichReporter
    from .stages.check import check_outputs
    from .stages.plan import load_plan

    workdir = workdir.resolve()
    catalog = Catalog.open(workdir)
    settings = resolve_config(workdir, None, {}, stored_key="plan_config")
    report = check_outputs(catalog, load_plan(catalog), settings, sample, RichReporter())
    typer.echo(
        f"checked {report.files} files, {report.rows} rows, {report.sampled} rows compared "
        "with their source entries"
    )
    if report.problems:
        for problem in report.problems[:20]:
            typer.echo(f"  {problem}", err=True)
        raise CheckFailed(f"{len(report.problems)} problems")
    typer.echo("all outputs match the plan")
    if with_report:
        from .stages.report import write_report

        html = write_report(catalog, settings, workdir / "report", reporter=RichReporter())
        typer.echo(f"report: {html}")


@app.command()
@user_errors
def report(
    workdir: WorkdirOption = Path("."),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Directory (default: WORKDIR/report).")
    ] = None,
    overwrite: OverwriteOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Plots and one HTML page of the counts, the plan and the outputs."""
    from .catalog import Catalog
    from .display import RichReporter
    from .stages.report import write_report

    workdir = workdir.resolve()
    catalog = Catalog.open(workdir)
    settings = resolve_config(workdir, None, {}, stored_key="plan_config")
    directory = (output or workdir / "report").resolve()
    typer.echo(
        write_report(catalog, settings, directory, overwrite=overwrite, reporter=RichReporter())
    )


def version_callback(value: bool) -> None:
    """Prints the version."""
    if value:
        typer.echo(f"balanced-batches {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True)
    ] = False,
) -> None:
    """Balanced, shuffled training files from many ROOT n-tuples."""


def main() -> None:
    """The command line (`python -m balanced_batches.cli`); the `balanced-batches` command
    comes here through `__main__.main`, which may have started local workers' server."""
    global _ONE_COMMAND_PER_PROCESS
    _ONE_COMMAND_PER_PROCESS = True
    from .engines import worker_server

    worker_server.keep_workers_off_the_main_script()
    app(prog_name="balanced-batches")


if __name__ == "__main__":
    main()
