"""ProcessPoolExecutor on a fork server against the package's ProcessEngine, alternated.

    .venv/bin/python -m benchmarks.executor_engine                    # medium, 5 pairs, ~4 min
    .venv/bin/python -m benchmarks.executor_engine --size small --pairs 3
    .venv/bin/python -m benchmarks.executor_engine --commit HEAD      # src/ of a commit

Two ways to run `count` and `run` with 2 local workers through the public API
(`balanced_batches.Workdir`):

- **A, processes**: `wd.count(workers=2)` / `wd.run(workers=2)`: the package's `ProcessEngine`
  (`make_engine`), whose fork server preloads `stages.WORKER_MODULES[command]`. The server
  is started first (`engines.local_workers_ahead`, timed), as the CLI's `count` and `run`
  do, so that both arms start their server at the same point; `--arms
  processes-api,executor` measures the bare API call instead, whose server starts only once
  the engine is made (for `run`, after the plan is loaded);
- **B, executor**: `wd.count(executor=pool)` / `wd.run(executor=pool)` with
  `concurrent.futures.ProcessPoolExecutor(2, mp_context=forkserver, initializer=...)`. The
  fork server preloads the same modules and is started (explicitly, as ProcessEngine does
  when it is made) with the workers' environment of `worker_server.worker_environment()`
  (one BLAS/OpenMP thread: it must be set before numpy loads) and Ctrl-C ignored; the
  initializer sets that environment again, ignores SIGINT, makes the worker exit when the
  command's process ends (a pidfd watch, as ProcessEngine's workers) and calls `gc.freeze()`.
  A fresh pool per timed command, as ProcessEngine is made per command; its start-up and its
  `shutdown(wait=True)` are timed (ProcessEngine's `close`, timed too, also stops its fork
  server; B's is stopped after the timing). What the pool does not have: ProcessEngine's
  memory limit per worker and its replacement of a dead worker (a dead pool worker breaks the
  whole pool).

Each timed command runs in a fresh Python subprocess (this module with `measure ...`), so
neither imports nor a fork server leak from A to B; it prints one JSON line. The command's
process declares one command per process (`heap.one_command_per_process`, as the CLI does) in
both arms. Timed: from just before the call (B: before the pool is made) to its return (B:
after the pool is shut down); the subprocess's whole wall time (Python start-up, imports,
exit) and the CPU time (user + system) of its whole process tree (the command, the fork
server and the workers it reaped) are recorded too: on a shared machine the CPU time moves
less than the wall time.

Data: the benchmark dataset of `--size` (made by `datasets.ensure_dataset` if missing), counted
once and planned as the pipeline benchmark plans it (`pipeline.PlanSettings`: PU200, 15 per
batch type, zstd:5, seed 12345, the batch count from `scaling.batches_for` with fraction 1).
`count` runs in a fresh working directory each time (every file counted); `run` in a fresh
copy of the planned working directory, restored to the same path each time (the catalog holds
absolute paths), so outputs can be compared byte for byte: the sha256 of every output file
(`counts.json` for count) must be the same in every measurement of both arms.

`--combine A.json B.json ...` summarises the pairs of several result files together (each
pair stays within its file's series).

Order: one untimed warm-up of each (command, arm), then `--pairs` pairs, each
count A, count B, run A, run B. Prints medians per (command, arm), B/A of the medians and the
median of the per-pair ratios; writes `<out>/results/executor_engine-<size>-<A>-vs-<B>.json`
(`...-<commit>.json` with `--commit`).

With `--commit REV`, `src/` of that commit is exported (`git archive`) under
`<out>/work/executor-engine/src-<rev>` and put first on PYTHONPATH of every subprocess: a
working tree being edited meanwhile does not change what is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# Only the standard library at module level: B's workers import this module to find the
# initializer, and nothing else of it should cost them time.

WORKERS = 2
# processes: ProcessEngine with its fork server started first, as the CLI's commands do;
# processes-api: `wd.count(workers=2)` alone (the server starts when the engine is made, after
# the command's own set-up: `run` loads the plan first); executor: the pool of `make_pool`
ARM_CHOICES = ("processes", "processes-api", "executor")
DEFAULT_ARMS = ("processes", "executor")  # A, B
COMMANDS = ("count", "run")
REPOSITORY = Path(__file__).resolve().parent.parent


# -- B: the pool -------------------------------------------------------------------------------


def _initializer(environment: dict[str, str], command: int) -> None:
    """A pool worker's set-up: environment, Ctrl-C ignored, death with the command, freeze."""
    os.environ.update(environment)
    # death with the command exactly as ProcessEngine's workers (in every measured commit)
    from balanced_batches.engines.processes import _exit_with

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with(command)
    gc.freeze()


@contextlib.contextmanager
def _starting_server(environment: dict[str, str]) -> Iterator[None]:
    """Within: the environment set and Ctrl-C ignored (a fork server started here keeps both)."""
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, interrupt)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def make_pool(command: str) -> Any:
    """B's executor for `command`: 2 workers forked from a server that preloaded its modules."""
    import concurrent.futures
    import multiprocessing
    import multiprocessing.forkserver

    from balanced_batches.engines.worker_server import worker_environment
    from balanced_batches.stages import WORKER_MODULES

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_MODULES[command]))
    environment = worker_environment()
    with _starting_server(environment):
        multiprocessing.forkserver.ensure_running()  # returns at once; it imports meanwhile
    return concurrent.futures.ProcessPoolExecutor(
        WORKERS,
        mp_context=context,
        initializer=_initializer,
        initargs=(environment, os.getpid()),
    )


# -- one measurement (in its own subprocess) ---------------------------------------------------


def measure(command: str, arm: str, workdir: Path, inputs: dict[str, str]) -> dict[str, Any]:
    """Times one `count` or `run` in this process; the caller made the working directory."""
    import balanced_batches as bb
    from balanced_batches.engines import heap

    heap.one_command_per_process()  # as the CLI: the command's process freezes what lives
    wd = bb.Workdir.open(workdir)
    call = (lambda **kw: wd.count(**inputs, **kw)) if command == "count" else wd.run
    started = time.perf_counter()
    if arm == "processes":
        from balanced_batches.engines import local_workers_ahead
        from balanced_batches.stages import WORKER_MODULES

        with local_workers_ahead(WORKERS, worker_modules=WORKER_MODULES[command]):
            call(workers=WORKERS)  # ProcessEngine uses the running server
    elif arm == "processes-api":
        call(workers=WORKERS)
    else:
        pool = make_pool(command)
        try:
            call(executor=pool)
        finally:
            pool.shutdown(wait=True)
    seconds = time.perf_counter() - started
    if arm == "executor":
        _stop_server()  # untimed: only so that its workers' CPU time reaches the parent
    return {"seconds": seconds}


def _stop_server() -> None:
    """Stops multiprocessing's fork server and waits for it, as `worker_server.release` does
    for ProcessEngine's: the CPU time of the workers it reaped then counts as ours."""
    import multiprocessing.forkserver

    server = multiprocessing.forkserver._forkserver
    pid = getattr(server, "_forkserver_pid", None)
    stop = getattr(server, "_stop", None)
    if pid is None or stop is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    stop()


# -- orchestration -----------------------------------------------------------------------------


def _environment(src: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(src), str(REPOSITORY), env.get("PYTHONPATH")) if p
        )
    return env


def _subprocess(arguments: Sequence[str], src: Path | None) -> tuple[dict[str, Any], float, float]:
    """Runs this module with `arguments` in a fresh interpreter: its JSON line, its wall time
    and the CPU time (user + system) of its process tree (every process reaped in it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", "import benchmarks.executor_engine as m; m.main()", *arguments],
        cwd=REPOSITORY,
        env=_environment(src),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall, cpu


def prepare(size: str, root: Path, template: Path, run_work: Path) -> dict[str, Any]:
    """Counts the dataset once and plans it as the pipeline benchmark does (in this process);
    keeps the planned working directory as `template` (made at `run_work`, the path its copies
    are restored to)."""
    from dataclasses import asdict, replace

    import balanced_batches as bb

    from .datasets import SIZES, ensure_dataset
    from .pipeline import PlanSettings, plan_facts

    dataset = ensure_dataset(SIZES[size], root.parent.parent, WORKERS)
    inputs = dataset_inputs(dataset.file_list)
    shutil.rmtree(run_work.parent, ignore_errors=True)
    shutil.rmtree(template, ignore_errors=True)
    wd = bb.Workdir.open(run_work)
    wd.count(**inputs, workers=WORKERS)
    settings = PlanSettings()
    options = {
        "pileup": settings.pileup,
        "events_per_batch_type": settings.per_batch,
        "output_directory": str(run_work.parent / "batches"),
        "batches_per_file": settings.batches_per_file,
        "compression": settings.compression,
        "seed": settings.seed,
    }
    wd.plan(**options, batches=1)  # probe: streams and files (as scaling.batches_for)
    probe = plan_facts(run_work)
    batches = max(1, round(probe.read_entries / (probe.n_streams * probe.per_batch)))
    settings = replace(settings, batches=batches)
    wd.plan(**options, batches=batches)
    facts = plan_facts(run_work)
    shutil.copytree(run_work, template)
    return {
        "dataset": dataset.as_dict(),
        "plan_settings": asdict(settings),
        "plan": {
            "batches": facts.n_batches,
            "streams": facts.n_streams,
            "output_files": facts.n_output_files,
            "output_rows": facts.output_rows,
            "read_files": len(facts.read_paths),
            "read_entries": facts.read_entries,
        },
        "inputs": inputs,
    }


def dataset_inputs(file_list: Path) -> dict[str, str]:
    """`Workdir.count` options for the benchmark dataset (the original YAML files)."""
    from .datasets import BINNING, CAMPAIGN, PROCESS_TYPES

    return {
        "campaign": CAMPAIGN,
        "file_list": str(file_list),
        "process_types": str(PROCESS_TYPES),
        "binning": str(BINNING),
    }


def digest(paths: Sequence[Path]) -> str:
    """One sha256 over the files' names and bytes, in name order."""
    total = hashlib.sha256()
    for path in sorted(paths):
        total.update(path.name.encode())
        total.update(hashlib.sha256(path.read_bytes()).digest())
    return total.hexdigest()


def one(
    command: str,
    arm: str,
    root: Path,
    template: Path,
    run_work: Path,
    inputs: dict[str, str],
    src: Path | None,
) -> dict[str, Any]:
    """A fresh working directory, one measured command in a subprocess, its outputs' digest."""
    if command == "count":
        workdir = root / "count" / "work"
        shutil.rmtree(workdir.parent, ignore_errors=True)
        workdir.parent.mkdir(parents=True)
    else:
        workdir = run_work
        shutil.rmtree(run_work.parent, ignore_errors=True)
        shutil.copytree(template, run_work)
    arguments = ["measure", command, arm, str(workdir), json.dumps(inputs)]
    load = os.getloadavg()[0]
    record, wall, cpu = _subprocess(arguments, src)
    if command == "count":
        outputs = [workdir / "counts.json"]
    else:
        outputs = list((run_work.parent / "batches").glob("*.root"))
    record.update(
        command=command,
        arm=arm,
        process_s=wall,
        cpu_s=cpu,
        load_1min=load,
        output_files=len(outputs),
        sha256=digest(outputs),
    )
    return record


def summarise(records: list[dict[str, Any]], arms: Sequence[str]) -> dict[str, Any]:
    """Medians per (command, arm), B/A of the medians and the median of per-pair ratios."""
    summary: dict[str, Any] = {}
    for command in COMMANDS:
        a, b = ([r for r in records if r["command"] == command and r["arm"] == arm] for arm in arms)
        entry: dict[str, Any] = {}
        for key in ("seconds", "process_s", "cpu_s"):
            med_a = statistics.median(r[key] for r in a)
            med_b = statistics.median(r[key] for r in b)
            ratios = [rb[key] / ra[key] for ra, rb in zip(a, b, strict=True)]
            entry[key] = {
                "A": [round(r[key], 3) for r in a],
                "B": [round(r[key], 3) for r in b],
                "median_A": med_a,
                "median_B": med_b,
                "B_over_A_of_medians": med_b / med_a,
                "median_of_pair_ratios": statistics.median(ratios),
                "pair_ratio_interval_95": bootstrap_interval(ratios),
                "pairs_B_faster": sum(r < 1 for r in ratios),
            }
        digests = {r["sha256"] for r in a + b}
        entry["outputs_identical"] = len(digests) == 1
        entry["output_files"] = a[0]["output_files"]
        summary[command] = entry
    return summary


def bootstrap_interval(ratios: Sequence[float], draws: int = 5000) -> tuple[float, float]:
    """95 % bootstrap interval of the median of the per-pair ratios (seeded: reproducible)."""
    import random

    chance = random.Random(1)
    medians = sorted(statistics.median(chance.choices(ratios, k=len(ratios))) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def table(summary: dict[str, Any], arms: Sequence[str]) -> str:
    """Markdown table of the summary."""
    lines = [
        f"| command | timed | A: {arms[0]} s | B: {arms[1]} s | B/A of medians "
        "| median B/A per pair [95 % interval] | B faster | outputs identical |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for command, entry in summary.items():
        for key, label in (
            ("seconds", "command wall"),
            ("process_s", "subprocess wall"),
            ("cpu_s", "CPU of the tree"),
        ):
            e = entry[key]
            low, high = e["pair_ratio_interval_95"]
            a = ", ".join(f"{v:.2f}" for v in e["A"])
            b = ", ".join(f"{v:.2f}" for v in e["B"])
            lines.append(
                f"| {command} | {label} | **{e['median_A']:.2f}** ({a}) | "
                f"**{e['median_B']:.2f}** ({b}) | {e['B_over_A_of_medians']:.3f} | "
                f"{e['median_of_pair_ratios']:.3f} [{low:.3f}, {high:.3f}] | "
                f"{e['pairs_B_faster']}/{len(e['A'])} | {entry['outputs_identical']} |"
            )
    return "\n".join(lines)


def export_src(revision: str, root: Path) -> tuple[Path, str]:
    """`src/` of `revision`, exported with git archive (once per commit)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", revision],
        cwd=REPOSITORY,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    target = root / f"src-{commit}"
    if not (target / "src" / "balanced_batches" / "__init__.py").exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", commit, "src"], cwd=REPOSITORY, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src", commit


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.executor_engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", default="medium", help="a size of benchmarks.datasets")
    parser.add_argument("--pairs", type=int, default=5, help="alternated A/B pairs (>= 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed pairs first")
    parser.add_argument("--out", type=Path, default=Path("bench-data"))
    parser.add_argument("--commit", default=None, help="measure src/ of this commit")
    parser.add_argument(
        "--arms",
        default=",".join(DEFAULT_ARMS),
        help=f"A,B from {', '.join(ARM_CHOICES)} (default: %(default)s)",
    )
    parser.add_argument(
        "--combine",
        nargs="+",
        type=Path,
        default=None,
        metavar="JSON",
        help="only summarise the pairs of these result files together (same arms), no runs",
    )
    args = parser.parse_args(argv)
    args.arms = tuple(args.arms.split(","))
    if len(args.arms) != 2 or not set(args.arms) <= set(ARM_CHOICES):
        parser.error(f"--arms: two of {', '.join(ARM_CHOICES)}")
    return args


def orchestrate(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Prepares the data, runs the alternated pairs, prints and writes the results."""
    args = parse_args(argv)
    if args.combine:
        series = [json.loads(path.read_text()) for path in args.combine]
        arms = (series[0]["arms"]["A"], series[0]["arms"]["B"])
        summary = summarise([r for s in series for r in s["records"]], arms)
        for s in series:
            print(f"{s['started_utc']} UTC, src {s['commit']}: {s['pairs']} pairs")
        print(table(summary, arms))
        return {"summary": summary}
    out = args.out.resolve()
    root = out / "work" / "executor-engine"
    root.mkdir(parents=True, exist_ok=True)
    src, commit = export_src(args.commit, root) if args.commit else (None, None)
    template, run_work = root / "planned-template", root / "run" / "work"
    started = time.time()
    prepared, _, _ = _subprocess(
        ["prepare", args.size, str(root), str(template), str(run_work)], src
    )
    inputs = prepared["inputs"]
    records: list[dict[str, Any]] = []
    for index in range(args.warmup + args.pairs):
        warm = index < args.warmup
        for command in COMMANDS:
            for arm in args.arms:
                record = one(command, arm, root, template, run_work, inputs, src)
                record["pair"] = index - args.warmup
                label = "warm-up" if warm else f"pair {record['pair']}"
                print(
                    f"{label} {command:5} {arm:13} "
                    f"{record['seconds']:6.2f} s (process {record['process_s']:.2f} s, "
                    f"CPU {record['cpu_s']:.2f} s, "
                    f"load {record['load_1min']:.2f}) {record['sha256'][:12]}",
                    file=sys.stderr,
                    flush=True,
                )
                if not warm:
                    records.append(record)
    shutil.rmtree(root / "run", ignore_errors=True)
    shutil.rmtree(root / "count", ignore_errors=True)
    summary = summarise(records, args.arms)
    results = {
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "elapsed_s": time.time() - started,
        "commit": commit or _working_tree_commit(),
        "source": "git archive of " + commit if commit else "installed package (working tree)",
        "size": args.size,
        "arms": {"A": args.arms[0], "B": args.arms[1]},
        "pairs": args.pairs,
        "warmup": args.warmup,
        "nproc": os.cpu_count(),
        "load_average_end": os.getloadavg(),
        **{key: value for key, value in prepared.items() if key != "inputs"},
        "summary": summary,
        "records": records,
    }
    directory = out / "results"
    directory.mkdir(parents=True, exist_ok=True)
    name = f"executor_engine-{args.size}-{args.arms[0]}-vs-{args.arms[1]}"
    name += f"-{commit}.json" if commit else ".json"
    (directory / name).write_text(json.dumps(results, indent=2))
    print(table(summary, args.arms))
    return results


def _working_tree_commit() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head + ("+dirty src/" if dirty else "")


def main(argv: Sequence[str] | None = None) -> None:
    """`measure COMMAND ARM WORKDIR INPUTS` and `prepare ...` (subprocesses), else the benchmark."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "measure":
        command, arm, workdir, inputs = argv[1:5]
        print(json.dumps(measure(command, arm, Path(workdir), json.loads(inputs))))
    elif argv and argv[0] == "prepare":
        size, root, template, run_work = argv[1:5]
        print(json.dumps(prepare(size, Path(root), Path(template), Path(run_work))))
    else:
        orchestrate(argv)


if __name__ == "__main__":
    main()
