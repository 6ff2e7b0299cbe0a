"""Fault injection for the test_faults_*.py modules: real processes killed, limited and
measured.

`balanced-batches` is started as a real process in its own session, so that a kill of its
process group also takes down every worker it started. Two ways of choosing the moment:

- `run_killed_after`: after a delay (the tests draw it from a seeded generator);
- `run_killed_at`: exactly when a named function is called for the n-th time. This module is
  then the program (`python faults_util.py HOOK ARGS...`): it wraps the function so that the
  process kills itself with SIGKILL before or after that call, then runs the command line.

Also: a file-size limit for a child (a full disk without root), its peak resident memory
(`os.wait4`), digests of output directories, and the catalog look-ups and command lines the
fault tests share. Run as a script, this module imports only the package and the standard
library; it imports the package only where a function needs it, after the kill point is in
place.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from balanced_batches.catalog import FileRecord

TIMEOUT = 600  # seconds any one command may take on a loaded machine
LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING) balanced_batches[\w.]*: ")


@dataclass(frozen=True)
class KillPoint:
    """Kill the process at the `nth` call of `target` whose arguments mention every `needle`.

    `target` is `module:attribute.path` (a module function, a class method, or a function of
    the standard library); `when` is "before" or "after" the original function runs.
    """

    target: str
    nth: int = 1
    when: str = "after"
    needles: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Outcome:
    """How a command ended, with its output."""

    pid: int
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def killed(self) -> bool:
        """True if SIGKILL ended the process."""
        return self.returncode == -signal.SIGKILL


def command_line(executable: Path, args: Iterable[object]) -> list[str]:
    """The argument vector of `balanced-batches ARGS`."""
    return [str(executable), *(str(arg) for arg in args)]


def run_command(
    executable: Path,
    args: Iterable[object],
    *,
    preexec_fn: Callable[[], None] | None = None,
) -> Outcome:
    """Runs `balanced-batches ARGS` to its end in a new session (for parity with the kills)."""
    return _to_end(command_line(executable, args), preexec_fn)


def _start(
    command: list[str], preexec_fn: Callable[[], None] | None = None
) -> subprocess.Popen[str]:
    """A command in a session of its own (its whole process group can be killed), text pipes."""
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )


def _to_end(command: list[str], preexec_fn: Callable[[], None] | None = None) -> Outcome:
    """Runs a command to its end; whatever it left running in its group is killed."""
    start = time.monotonic()
    process = _start(command, preexec_fn)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        kill_group(process.pid)
    return Outcome(process.pid, process.returncode, stdout, stderr, time.monotonic() - start)


def _end_noting(
    process: subprocess.Popen[str],
    start: float,
    ready: Callable[[], bool],
    on_ready: Callable[[], None],
) -> tuple[str, str, float | None]:
    """Waits for the command's end (at most TIMEOUT after `start`), polling `ready()` every
    10 ms until it first holds, then calling `on_ready()` once. Returns the command's output
    and when, after `start`, `ready()` held (None if it never did)."""
    seen: float | None = None
    while True:
        remaining = start + TIMEOUT - time.monotonic()
        poll = remaining if seen is not None else min(0.01, remaining)
        try:
            stdout, stderr = process.communicate(timeout=poll)
            return stdout, stderr, seen
        except subprocess.TimeoutExpired:
            if seen is not None or remaining <= 0.01:
                raise
            if ready():
                seen = time.monotonic() - start
                on_ready()


def run_watched(
    executable: Path, args: Iterable[object], started: Callable[[], bool]
) -> tuple[Outcome, float]:
    """Runs a command to its end; also returns when `started()` first held (polled every 10 ms).

    The kill tests use it to learn how long start-up (imports, workers) takes, so that
    they kill at moments when work is under way.
    """
    start = time.monotonic()
    process = _start(command_line(executable, args))
    try:
        stdout, stderr, seen = _end_noting(process, start, started, lambda: None)
    finally:
        kill_group(process.pid)
    elapsed = time.monotonic() - start
    return Outcome(process.pid, process.returncode, stdout, stderr, elapsed), seen or elapsed


def run_acting_when(
    executable: Path,
    args: Iterable[object],
    ready: Callable[[], bool],
    act: Callable[[int], None],
    grace: float = 5.0,
) -> tuple[Outcome, list[int]]:
    """Runs `balanced-batches ARGS`; once `ready()` holds (polled every 10 ms) calls `act` with
    the command's pid, once, then lets the command end. Returns how it ended and the processes
    of its group still alive `grace` seconds later (they are killed after): a process that
    closed its pipes may take a moment to end.
    """
    start = time.monotonic()
    process = _start(command_line(executable, args))
    try:
        stdout, stderr, seen = _end_noting(process, start, ready, lambda: act(process.pid))
        left_running = members_after(process.pid, grace)
        assert seen is not None, f"the command ended before it was ready to be acted on:\n{stderr}"
    finally:
        kill_group(process.pid)
    elapsed = time.monotonic() - start
    return Outcome(process.pid, process.returncode, stdout, stderr, elapsed), left_running


def run_killed_after(executable: Path, args: Iterable[object], delay: float) -> Outcome:
    """Starts `balanced-batches ARGS`, kills its whole process group with SIGKILL after `delay`.

    If the command ends before the delay, its own exit code is returned instead.
    """
    start = time.monotonic()
    process = _start(command_line(executable, args))
    try:
        stdout, stderr = process.communicate(timeout=delay)
    except subprocess.TimeoutExpired:
        kill_group(process.pid)
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        kill_group(process.pid)
    return Outcome(process.pid, process.returncode, stdout, stderr, time.monotonic() - start)


def run_killed_at(point: KillPoint, args: Iterable[object]) -> Outcome:
    """Runs `balanced-batches ARGS` in a process that SIGKILLs itself at `point`."""
    return _to_end([sys.executable, __file__, json.dumps(asdict(point)), *(str(a) for a in args)])


def kill_group(pgid: int) -> None:
    """SIGKILLs a process group and waits until none of its processes is alive."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...), or
    None once the process is gone (or going while being read)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and brackets


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else None
        if fields is not None and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def parent_of(pid: int) -> int | None:
    """The parent pid of a live process (None once it is gone)."""
    fields = _stat(pid)
    return None if fields is None else int(fields[1])


def descendants(pid: int) -> set[int]:
    """The live processes started by `pid`, by its children, and so on."""
    parents = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else None
        if fields is not None and fields[0] not in ("Z", "X"):
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def new_descendants_after(before: set[int], grace: float = 10.0) -> set[int]:
    """This process's descendants not in `before`, once there are none or after `grace`
    seconds: a process that was told to stop may take a moment to end."""
    deadline = time.monotonic() + grace
    while (new := descendants(os.getpid()) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    return new


def members_after(pgid: int, grace: float) -> list[int]:
    """The live processes of a group once it is empty, or after `grace` seconds: a process
    that closed its pipes may take a moment to end."""
    deadline = time.monotonic() + grace
    while (members := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return members


def fork_servers(command: int) -> list[int]:
    """The fork servers (multiprocessing's, for local workers) in a command's process group,
    still its children or orphaned once it ended."""
    servers = []
    for pid in group_members(command):
        try:
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.forkserver" in arguments:
            servers.append(pid)
    return servers


def forked_workers(command: int) -> list[int]:
    """The local worker processes of a command: the children of its fork server."""
    servers = {pid for pid in fork_servers(command) if parent_of(pid) == command}
    return [pid for pid in group_members(command) if parent_of(pid) in servers]


def peak_rss_of(executable: Path, args: Iterable[object]) -> tuple[Outcome, int]:
    """Runs a command to its end; returns its outcome and its peak resident set in bytes.

    `os.wait4` gives the resource usage of exactly this child (and what it waited for),
    unlike RUSAGE_CHILDREN, which keeps the maximum of every child the tests ever ran.
    """
    start = time.monotonic()
    with (
        open(os.devnull, "rb") as stdin,
        tempfile.TemporaryFile() as stdout,
        tempfile.TemporaryFile() as stderr,
    ):
        process = subprocess.Popen(
            command_line(executable, args),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        outcome = Outcome(
            process.pid,
            process.returncode,
            stdout.read().decode(),
            stderr.read().decode(),
            time.monotonic() - start,
        )
    return outcome, usage.ru_maxrss * 1024  # Linux reports kilobytes


def file_size_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn limiting every file the child writes to `limit` bytes (RLIMIT_FSIZE).

    Python ignores SIGXFSZ, so a write beyond the limit fails with EFBIG, as on a full disk.
    """

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


# -- files --------------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error_line(exit_code: int, stdout: str, stderr: str) -> str:
    """Exit code 2, nothing on stdout, and stderr = log lines, then exactly one `error:` line."""
    assert exit_code == 2, f"exit {exit_code}\nstdout: {stdout}\nstderr: {stderr}"
    assert stdout == ""
    lines = stderr.splitlines()
    assert lines, "no message on stderr"
    assert lines[-1].startswith("error: "), stderr
    assert all(LOG_LINE.match(line) for line in lines[:-1]), (
        f"the message is not one line (or a traceback came with it):\n{stderr}"
    )
    return lines[-1]


def cli_error(*args: object) -> str:
    """Runs a command in this process (conftest.cli) that must fail with a one-line user error."""
    from conftest import cli  # pytest's side only: run as a script, this module needs no pytest

    result = cli(*args, expect=None)
    return error_line(result.exit_code, result.stdout, result.stderr)


def process_error(outcome: Outcome) -> str:
    """The one-line user error of a command that ran as a real process."""
    return error_line(outcome.returncode, outcome.stdout, outcome.stderr)


def flat(text: str) -> str:
    """Whitespace-normalised text (rich wraps long lines at the console width)."""
    return " ".join(text.split())


def output_digests(directory: Path, pattern: str = "batch*.root") -> dict[str, str]:
    """sha256 of every output file of a directory, by name."""
    return {path.name: sha256_of(path) for path in sorted(directory.glob(pattern))}


def leftovers(directory: Path) -> list[str]:
    """What interrupted atomic writes may leave: hidden `.NAME.part*` entries, `*.part` files."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if ".part" in p.name)


def restore_stat(path: Path, stat: os.stat_result) -> None:
    """Gives a file back the access and modification times of an earlier stat, to the ns."""
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


# -- the working directory and the command line of the fault tests -----------------------------


def plan_scratch(workdir: Path) -> Path:
    """The scratch directory of a working directory's plan (`scratch/balanced-batches-<id>`
    under the default scratch root), or where it would be while none exists."""
    made = sorted((workdir / "scratch").glob("balanced-batches-*"))
    return made[0] if made else workdir / "scratch" / "balanced-batches-none"


def units(workdir: Path) -> list[tuple[str, int, str, int, str | None]]:
    """(kind, index, status, attempts, error) of every unit in the catalog."""
    from balanced_batches.catalog import Catalog

    catalog = Catalog.open(workdir)
    try:
        return [(r.kind, r.unit, r.status, r.attempts, r.error) for r in catalog.unit_rows()]
    finally:
        catalog.close()


def files(workdir: Path) -> list[FileRecord]:
    """The catalog's input files, in list order."""
    from balanced_batches.catalog import Catalog

    catalog = Catalog.open(workdir)
    try:
        return catalog.files()
    finally:
        catalog.close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Polls a condition every 10 ms."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def finished_line(outdir: Path) -> str:
    """What `run` prints when it made the reference plan (3 batches x 588 regions x 2)."""
    return f"3 files, 3528 entries in {outdir}"


def run_args(workdir: Path, workers: int = 1) -> list[object]:
    """`run` with a given number of workers (1: in-process engine, more: worker processes)."""
    return ["run", "--workdir", workdir, "--workers", workers]


# -- the program: install a kill point, then run the command line ------------------------------


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: KillPoint) -> None:
    """Wraps `point.target` so that the process SIGKILLs itself at the chosen call."""
    module_name, _, attribute = point.target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *parents, name = attribute.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    original = getattr(owner, name)
    calls = 0

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        if all(needle in repr((args, kwargs)) for needle in point.needles):
            calls += 1
            if calls == point.nth and point.when == "before":
                _die()
            result = original(*args, **kwargs)
            if calls == point.nth:
                _die()
            return result
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def main(argv: Sequence[str]) -> None:
    """`faults_util.py KILLPOINT_JSON ARGS...`: balanced-batches ARGS, killed at the point."""
    data = json.loads(argv[0])
    install(KillPoint(**{**data, "needles": tuple(data["needles"])}))
    from balanced_batches.__main__ import main as command_main

    sys.argv = ["balanced-batches", *argv[1:]]
    command_main()


if __name__ == "__main__":
    # the directory of this file is first on sys.path: keep the tests' modules out of reach
    sys.path.pop(0)
    main(sys.argv[1:])


def copy_workdir(source: Path, target: Path) -> Path:
    """The catalog of a working directory (WAL included), without outputs or scratch."""
    import sqlite3
    from contextlib import closing

    from balanced_batches.catalog import CATALOG_NAME

    target.mkdir(parents=True)
    with (
        closing(sqlite3.connect(source / CATALOG_NAME)) as original,
        closing(sqlite3.connect(target / CATALOG_NAME)) as copy,
    ):
        original.backup(copy)
    return target


def run_exported_jobs(jobs: Path, sandboxes: Path) -> list[str]:
    """Runs every job an export directory lists, read jobs first, each in an empty directory
    of its own holding only the transferred files (`job.sh`, `spec.json`, `plan.npz`), as a
    batch system without a shared file system would; returns the job numbers."""
    import shutil

    listed = [*(jobs / "read-jobs.txt").read_text().split()]
    listed += (jobs / "write-jobs.txt").read_text().split()
    for job in listed:
        sandbox = sandboxes / f"sandbox-{job}"
        sandbox.mkdir()
        for name in ("spec.json", "plan.npz", "job.sh"):
            shutil.copy(jobs / name, sandbox / name)
        finished = subprocess.run(
            ["bash", "job.sh", job], cwd=sandbox, capture_output=True, text=True, timeout=180
        )
        assert finished.returncode == 0, finished.stderr
    return listed
