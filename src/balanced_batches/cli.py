"""The `balanced-batches` command: one subcommand per stage, each a thin call into the library."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.markup import escape

from . import __version__
from .errors import CheckFailed, ConfigError, user_error
from .stages import WORKER_MODULES, Command

if TYPE_CHECKING:
    from .workdir import Workdir

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


def user_errors(command: F) -> F:
    """Turns user-caused errors into one line on stderr and their exit code (`user_error`)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .display import configure_logging
        from .io.stores import release_connections

        configure_logging(bool(kwargs.get("verbose")))
        try:
            return command(*args, **kwargs)
        except (Exception, KeyboardInterrupt) as err:
            shown = user_error(err)
            if shown is None:
                raise  # a programming error: its traceback is wanted
            typer.echo(shown[0], err=True)
            raise typer.Exit(shown[1]) from None
        finally:
            release_connections()

    return wrapper  # type: ignore[return-value]


def _local_workers_ahead(
    command: Command, workers: int | None, scheduler: str | None, cluster: str | None
) -> contextlib.AbstractContextManager[None]:
    from .engines import local_workers_ahead

    return local_workers_ahead(workers, scheduler, cluster, WORKER_MODULES[command])


def _open(workdir: Path, config: Path | None = None, create: bool = False) -> Workdir:
    from .display import RichReporter
    from .workdir import Workdir

    return Workdir.open(workdir, config, create=create, reporter=RichReporter())


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
    vector_branches: Annotated[
        bool,
        typer.Option(
            "--vector-branches", help="Jagged branches as std::vector<T>, as CMS TauTuples."
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace files at the same names that it did not write."),
    ] = False,
    workers: Annotated[int, typer.Option(min=1)] = os.cpu_count() or 1,
    verbose: VerboseOption = False,
) -> None:
    """A synthetic TauTuple dataset (CMS crab layout) and its file list."""
    from .display import RichReporter
    from .synthetic.generate import GenerateOptions, generate_dataset

    options = GenerateOptions(
        output_dir=output_dir.resolve(),
        files_per_sample=files_per_sample,
        entries_per_file=entries_per_file,
        seed=seed,
        compression=compression,
        max_samples=max_samples,
        like_file_list=like_file_list,
        vector_branches=vector_branches,
        overwrite=overwrite,
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
    splits: Annotated[
        str | None,
        typer.Option(help="Held-out splits by event: train=0.8,validation=0.1,test=0.1."),
    ] = None,
    split_by: Annotated[
        str | None,
        typer.Option(help="Event identity (run,lumi,evt) or a rule ('evt % 2 == 0')."),
    ] = None,
    workers: WorkersOption = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address.")] = None,
    cluster: ClusterOption = None,
    on_bad_file: Annotated[str, typer.Option(help="fail or skip.")] = "fail",
    recompute_infos: Annotated[bool, typer.Option(hidden=True)] = False,
    files_per_job: Annotated[int | None, typer.Option(hidden=True)] = None,
    verbose: VerboseOption = False,
) -> None:
    """Count candidates per region in new or changed input files."""
    from .splits import parse_split_by, parse_splits
    from .workdir import InputOptions

    del recompute_infos, files_per_job  # original options: counting is always incremental here
    inputs = InputOptions(
        splits=None if splits is None else parse_splits(splits),
        split_by=None if split_by is None else parse_split_by(split_by),
        campaign=prod_campaign,
        file_list=None if input_file_list is None else str(input_file_list),
        replace_prefix=replace_file_prefix,
        tree=tree,
        process_types=None if process_types is None else str(process_types),
        binning=None if pt_abseta_bins is None else str(pt_abseta_bins),
    )
    with _local_workers_ahead("count", workers, scheduler, cluster):
        wd = _open(workdir, config, create=True)
        outcome = wd.count(
            inputs, on_bad_file=on_bad_file, workers=workers, scheduler=scheduler, cluster=cluster
        )
    typer.echo(
        f"counted {outcome.counted} files, {outcome.unchanged} unchanged, "
        f"{len(outcome.failed)} unreadable, {len(outcome.unmatched)} matching no process; "
        f"{wd.path / 'counts.json'}"
    )


def _patterns(text: str | None) -> list[str] | None:
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


def _plan_options(**options: Any) -> Any:
    from .workdir import PlanOptions

    paths = ("output_directory", "process_types", "binning")
    values: dict[str, Any] = {
        k: (str(v) if k in paths and v is not None else v) for k, v in options.items()
    }
    return PlanOptions(**values)


PileupOption = Annotated[str | None, typer.Option(help="NoPU, PU140, PU200, all or none.")]
PerBatchOption = Annotated[
    int | None, typer.Option(help="N: candidates of every region in every batch.")
]
BatchesOption = Annotated[int | None, typer.Option(help="Number of batches (default: int(max/N)).")]
MaxReuseOption = Annotated[int | None, typer.Option(help="Use no candidate more than R times.")]
TypeRatiosOption = Annotated[
    str | None, typer.Option(help="Per-type ratios: genuine=2,jet=1 (-1: all there is).")
]
ProcessRatiosOption = Annotated[
    str | None, typer.Option(help="Per-process ratios: DY=1,TT=2 (-1: all there is).")
]
SpectrumOption = Annotated[
    str | None, typer.Option(help="pT x |eta| target: flat, type:NAME or process:NAME.")
]


def _ratios(text: str | None, option: str) -> dict[str, float] | None:
    """`genuine=2,jet=1` -> {"genuine": 2.0, "jet": 1.0}."""
    if text is None:
        return None
    ratios = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, _, value = item.partition("=")
        try:
            ratios[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"{option} {text!r}: {item!r} is not NAME=RATIO") from None
    return ratios


@app.command()
@user_errors
def summary(
    workdir: WorkdirOption = Path("."),
    config: ConfigOption = None,
    pileup: PileupOption = None,
    events_per_batch_type: PerBatchOption = None,
    batches: BatchesOption = None,
    max_reuse: MaxReuseOption = None,
    type_ratios: TypeRatiosOption = None,
    process_ratios: ProcessRatiosOption = None,
    spectrum: SpectrumOption = None,
    reuse: Annotated[bool, typer.Option("--reuse", help="Show reuse factors, not counts.")] = False,
    per_batch: Annotated[
        bool, typer.Option("--per-batch", help="Show candidates a batch takes, not counts.")
    ] = False,
    distinct: Annotated[
        bool, typer.Option("--distinct", help="Show the distinct candidates' share of the rows.")
    ] = False,
    plots: Annotated[
        bool, typer.Option("--plots", help="Also write the report's input part to WORKDIR/report.")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Counts per region, and the batches a plan would give."""
    from .display import stdout, summary_lines

    wd = _open(workdir, config)
    options = _plan_options(
        pileup=pileup,
        events_per_batch_type=events_per_batch_type,
        batches=batches,
        max_reuse=max_reuse,
        type_ratios=_ratios(type_ratios, "--type-ratios"),
        process_ratios=_ratios(process_ratios, "--process-ratios"),
        spectrum=spectrum,
    )
    shown = "distinct" if distinct else "per_batch" if per_batch else "reuse" if reuse else "counts"
    for line in summary_lines(wd.summary(options), shown):
        stdout.print(line, soft_wrap=True)
    stdout.print(f"summary: {escape(str(wd.path / 'summary.json'))}")
    if plots:
        html = wd.report(wd.path / "report", input_only=True, options=options)
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
    type_ratios: TypeRatiosOption = None,
    process_ratios: ProcessRatiosOption = None,
    spectrum: SpectrumOption = None,
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
    branches: Annotated[
        str | None, typer.Option(help="Write only these branches: glob patterns, comma-separated.")
    ] = None,
    drop_branches: Annotated[
        str | None, typer.Option(help="Leave out these branches: glob patterns, comma-separated.")
    ] = None,
    weights: Annotated[
        bool, typer.Option("--weights", help="Add bb_weight: restores the input spectrum.")
    ] = False,
    overwrite: OverwriteOption = False,
    prod_campaign: Annotated[str | None, typer.Option(hidden=True)] = None,
    process_types: Annotated[Path | None, typer.Option(help="Original process_types.yaml.")] = None,
    pt_abseta_bins: Annotated[Path | None, typer.Option(help="Original binning.yaml.")] = None,
    jobconfigs_directory: Annotated[Path | None, typer.Option(hidden=True)] = None,
    verbose: VerboseOption = False,
) -> None:
    """Plan the balanced batches from the counts."""
    if jobconfigs_directory is not None:
        log.info("--jobconfigs-directory is not needed: the plan is kept in the catalog")
    wd = _open(workdir, config)
    options = _plan_options(
        pileup=pileup,
        events_per_batch_type=events_per_batch_type,
        batches=batches,
        max_reuse=max_reuse,
        type_ratios=_ratios(type_ratios, "--type-ratios"),
        process_ratios=_ratios(process_ratios, "--process-ratios"),
        spectrum=spectrum,
        seed=seed,
        output_directory=output_directory,
        batches_per_file=batches_per_file,
        format=output_format,
        compression=compression,
        overwrite=True if overwrite else None,
        branches=_patterns(branches),
        drop_branches=_patterns(drop_branches),
        weights=True if weights else None,
        campaign=prod_campaign,
        process_types=process_types,
        binning=pt_abseta_bins,
    )
    if summary_only:
        typer.echo(f"summary: {wd.write_summary_json(options)}")
        return
    outcome = wd.plan(options)
    typer.echo(outcome.describe())
    typer.echo(f"the plan will write {outcome.size.describe()}")


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
    with _local_workers_ahead("run", workers, scheduler, cluster):
        outcome = _open(workdir).run(
            workers=workers,
            scheduler=scheduler,
            cluster=cluster,
            keep_scratch=keep_scratch,
            overwrite=overwrite,
            space_check=not no_space_check,
        )
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
    if spec is not None:
        from .workdir import run_exported_job

        if job is None:
            raise ConfigError("--spec needs --job")
        typer.echo(run_exported_job(spec, job))
        return
    wd = _open(workdir)
    if list_jobs or job is None:
        n_reads, n_writes = wd.job_count()
        typer.echo(f"jobs 0-{n_reads - 1}: read one input file each (any order, in parallel)")
        typer.echo(f"jobs {n_reads}-{n_reads + n_writes - 1}: write output files (after all reads)")
        return
    typer.echo(wd.make_job(job))


@app.command("export-jobs")
@user_errors
def export_jobs_command(
    system: Annotated[str, typer.Option(help="htcondor or slurm.")] = "htcondor",
    directory: Annotated[Path, typer.Option(help="Where submit files go.")] = Path("jobs"),
    only_missing: Annotated[
        bool, typer.Option("--only-missing", help="Only jobs not finished yet.")
    ] = False,
    overwrite: OverwriteOption = False,
    keep_scratch: Annotated[
        bool, typer.Option("--keep-scratch", help="The last write job keeps the parts.")
    ] = False,
    workdir: WorkdirOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Submit files that run the plan as HTCondor or Slurm jobs."""
    exported = _open(workdir).export_jobs(
        directory, system, only_missing=only_missing, overwrite=overwrite, keep_scratch=keep_scratch
    )
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
    from .display import status_lines, stdout

    for line in status_lines(_open(workdir).status()):
        stdout.print(line, soft_wrap=True)


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
    wd = _open(workdir)
    problems = wd.check(sample)
    typer.echo(problems.describe())
    if problems:
        for problem in list(problems)[:20]:
            typer.echo(f"  {problem}", err=True)
        raise CheckFailed(f"{len(problems)} problems")
    typer.echo("all outputs match the plan")
    if with_report:
        typer.echo(f"report: {wd.report()}")


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
    directory = None if output is None else output.resolve()
    typer.echo(_open(workdir).report(directory, overwrite=overwrite))


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
    """The command line: `balanced-batches`, `python -m balanced_batches`."""
    from .engines import heap

    heap.one_command_per_process()
    app(prog_name="balanced-batches")


if __name__ == "__main__":
    main()
