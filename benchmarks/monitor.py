"""Run one command as a subprocess and measure it: wall time, CPU, memory, I/O, disk.

Every 0.2 s the process tree of the command is sampled with psutil: the resident set size of
each process (the CLI client and every Dask worker process of its LocalCluster), its
``/proc/<pid>/io`` counters, and the size of a directory (the scratch area of ``run``).
Bytes that uproot requests from each input file are counted by ``iotrace/sitecustomize.py``
in every Python process of the tree (see that module for why ``/proc/<pid>/io`` is not enough).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

SAMPLE_SECONDS = 0.2
IOTRACE_DIRECTORY = Path(__file__).resolve().parent / "iotrace"
REPOSITORY = Path(__file__).resolve().parent.parent


class CommandFailed(RuntimeError):
    """A measured command exited with a non-zero code."""


@dataclass
class Measurement:
    """What one measured command did."""

    command: list[str]
    wall_s: float
    cpu_s: float  # user + system of the command and every descendant it reaped
    peak_rss_client_mb: float  # the process started (the CLI)
    peak_rss_children_mb: float | None  # the largest descendant (Dask or pool worker)
    peak_rss_max_mb: float  # the largest single process
    peak_rss_sum_mb: float  # largest sum over the tree at one sample
    processes: int  # distinct processes seen in the tree
    rchar: int  # /proc/<pid>/io of the tree, last sample per process
    read_bytes: int
    wchar: int
    write_bytes: int
    traced_bytes: dict[str, int] = field(default_factory=dict)  # uproot requests per file
    traced_requests: int = 0
    watched_peak_bytes: int = 0  # peak size of the watched directory
    stdout: str = ""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, without the per-file byte counts (summarised by the caller)."""
        data = asdict(self)
        data.pop("traced_bytes")
        data["traced_total_bytes"] = sum(self.traced_bytes.values())
        return data


def directory_size(path: Path) -> int:
    """Apparent size of every file below `path` (0 if it does not exist)."""
    total = 0
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue
        except (FileNotFoundError, NotADirectoryError):
            continue
    return total


class _Sampler(threading.Thread):
    """Samples the process tree rooted at `pid` until stopped."""

    def __init__(self, pid: int, watch: Path | None) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.watch = watch
        self.stop_event = threading.Event()
        self.rss: dict[int, int] = {}
        self.io: dict[int, tuple[int, int, int, int]] = {}
        self.peak_sum = 0
        self.peak_watch = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(SAMPLE_SECONDS)

    def sample(self) -> None:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for process in processes:
            try:
                with process.oneshot():
                    rss = process.memory_info().rss
                    counters = process.io_counters()
            except psutil.Error:
                continue
            total += rss
            self.rss[process.pid] = max(self.rss.get(process.pid, 0), rss)
            self.io[process.pid] = (
                counters.read_chars,
                counters.read_bytes,
                counters.write_chars,
                counters.write_bytes,
            )
        self.peak_sum = max(self.peak_sum, total)
        if self.watch is not None:
            self.peak_watch = max(self.peak_watch, directory_size(self.watch))


def _traced(directory: Path) -> tuple[dict[str, int], int]:
    per_file: dict[str, int] = {}
    requests = 0
    for path in directory.glob("*.json"):
        for name, (n_bytes, n_requests) in json.loads(path.read_text()).items():
            per_file[name] = per_file.get(name, 0) + n_bytes
            requests += n_requests
    return per_file, requests


def measure(
    command: Sequence[str],
    *,
    cwd: Path | None = None,
    watch: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> Measurement:
    """Runs `command`, sampling its process tree; raises CommandFailed on a non-zero exit."""
    with tempfile.TemporaryDirectory(prefix="bb-iotrace-") as trace:
        environment = dict(os.environ if env is None else env)
        environment["BB_BENCH_IOTRACE"] = trace
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(IOTRACE_DIRECTORY), str(REPOSITORY), environment.get("PYTHONPATH")])
        )
        environment.setdefault("PYTHONWARNINGS", "ignore")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        sampler = _Sampler(process.pid, watch)
        sampler.start()
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        finally:
            sampler.stop_event.set()
            sampler.join()
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if process.returncode != 0:
            tail = f"{stdout[-2000:]}\n{stderr[-4000:]}"
            raise CommandFailed(f"{' '.join(command)}: exit {process.returncode}\n{tail}")
        per_file, requests = _traced(Path(trace))
    children = [rss for pid, rss in sampler.rss.items() if pid != process.pid]
    io = list(sampler.io.values())
    mb = 2.0**20
    return Measurement(
        command=list(command),
        wall_s=wall,
        cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        peak_rss_client_mb=sampler.rss.get(process.pid, 0) / mb,
        peak_rss_children_mb=max(children) / mb if children else None,
        peak_rss_max_mb=max(sampler.rss.values(), default=0) / mb,
        peak_rss_sum_mb=sampler.peak_sum / mb,
        processes=len(sampler.rss),
        rchar=sum(c[0] for c in io),
        read_bytes=sum(c[1] for c in io),
        wchar=sum(c[2] for c in io),
        write_bytes=sum(c[3] for c in io),
        traced_bytes=per_file,
        traced_requests=requests,
        watched_peak_bytes=sampler.peak_watch,
        stdout=stdout,
    )


def python_command(module: str, *args: object) -> list[str]:
    """`python -m module args` with this interpreter."""
    return [sys.executable, "-m", module, *(str(arg) for arg in args)]


def local_engine(workers: int) -> None:
    """Starts the CLI's local engine (fork server and worker processes), runs one trivial
    task per worker and stops it: a start-up baseline."""
    from balanced_batches.engines import make_engine
    from balanced_batches.stages import WORKER_MODULES

    engine = make_engine(workers, worker_modules=WORKER_MODULES["run"])
    try:
        list(engine.map(abs, [0] * workers))
    finally:
        engine.close()


def imports() -> None:
    """Imports what every CLI process and Dask worker of `count` and `run` imports."""
    import balanced_batches.cli
    import balanced_batches.stages.count
    import balanced_batches.stages.units  # noqa: F401


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "local-engine":
        local_engine(int(sys.argv[2]))
    elif sys.argv[1:] == ["imports"]:
        imports()
    else:
        raise SystemExit("usage: python -m benchmarks.monitor local-engine WORKERS | imports")
