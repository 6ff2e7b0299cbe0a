"""A real personal HTCondor pool runs the exported DAG and reproduces `run` byte for byte: with
a shared file system, and with jobs that cannot read the submit directory (they run as the slot
user, not as their submitter) and keep everything on an XRootD server on the host's loopback.

The pool lives in a Debian trixie chroot (`debootstrap --variant=minbase trixie`, then
`apt-get install htcondor` inside it), cached under CHROOT so that only the first run pays for
the download (~35 s, 520 MB). The daemons run as root inside the chroot with a personal-pool
configuration on loopback; the jobs are submitted by an unprivileged user of the chroot. This
checkout (its venv and the editable install's src/), the installation of the venv's base
interpreter (`sys.base_prefix`, and wherever `sys.executable` resolves to) and pytest's
temporary directories are bind-mounted at the same paths inside the chroot, since the exported
submit files and job.sh name absolute paths (job.sh runs `sys.executable`): the test runs from
any checkout. Without root the module is skipped; when the pool cannot be set up (no
debootstrap or Debian mirror, a venv that does not run inside the chroot, a pool that does not
come up in time) it is skipped too, or fails under BB_REQUIRE_SERVICES=1 (tests/services.py).
The daemons are always stopped and every mount undone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import balanced_batches
from conftest import (
    Dataset,
    Production,
    assert_same_bytes,
    cli,
    count_args,
    project_yaml,
    reference_plan_args,
)
from services import impossible_here, unavailable

pytestmark = pytest.mark.slow

CHROOT = Path(os.environ.get("BB_HTCONDOR_CHROOT", "/var/tmp/bb-htcondor-chroot"))
MIRROR = os.environ.get("BB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# one pool at a time in the shared chroot (and one build of it), whoever runs the tests
LOCK = CHROOT.with_name(CHROOT.name + ".lock")
LOCK_SECONDS = 1800
# the checkout this test belongs to: its venv and the src/ of the editable install
CHECKOUT = Path(__file__).resolve().parents[1]
# a Python built on the host (pyenv) links to these system libraries, its interpreter and
# extension modules alike (trixie names)
PYTHON_LIBRARIES = (
    "libbz2-1.0",
    "libexpat1",
    "liblzma5",
    "libncursesw6",
    "libreadline8t64",
    "zlib1g",
    "libsqlite3-0",
    "libffi8",
    "libssl3t64",
    "libuuid1",
)
USER, UID = "bbcondor", 4242
NOBODY = 65534  # the slot user the jobs run as
STARTUP_SECONDS = 60
JOBS_SECONDS = 300
CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/tmp",
    "DEBIAN_FRONTEND": "noninteractive",
}
CONFIG = """\
use ROLE : Personal
CONDOR_HOST = 127.0.0.1
NETWORK_INTERFACE = 127.0.0.1
NETWORK_HOSTNAME = localhost
BIND_ALL_INTERFACES = False
ENABLE_IPV6 = False
ENABLE_IPV4 = True
# no private /tmp, /var/tmp or pid namespace inside a chroot without them
MOUNT_UNDER_SCRATCH =
USE_PID_NAMESPACES = False
BASE_CGROUP =
SEC_DEFAULT_AUTHENTICATION_METHODS = FS, CLAIMTOBE
SEC_CLIENT_AUTHENTICATION_METHODS = FS, CLAIMTOBE
SEC_READ_AUTHENTICATION_METHODS = FS, CLAIMTOBE
SEC_WRITE_AUTHENTICATION_METHODS = FS, CLAIMTOBE
SEC_DAEMON_AUTHENTICATION_METHODS = FS, CLAIMTOBE
SEC_NEGOTIATOR_AUTHENTICATION_METHODS = FS, CLAIMTOBE
SEC_ADMINISTRATOR_AUTHENTICATION_METHODS = FS, CLAIMTOBE
ALLOW_READ = *
ALLOW_WRITE = *
ALLOW_DAEMON = *
ALLOW_NEGOTIATOR = *
ALLOW_ADMINISTRATOR = *
UID_DOMAIN = bbtest
TRUST_UID_DOMAIN = True
SOFT_UID_DOMAIN = True
FILESYSTEM_DOMAIN = bbtest
NUM_CPUS = 2
MEMORY = 16000
START = True
SUSPEND = False
PREEMPT = False
KILL = False
WANT_SUSPEND = False
WANT_VACATE = False
NEGOTIATOR_INTERVAL = 2
NEGOTIATOR_CYCLE_DELAY = 2
SCHEDD_INTERVAL = 2
UPDATE_INTERVAL = 2
STARTER_UPDATE_INTERVAL = 2
DAGMAN_USER_LOG_SCAN_INTERVAL = 1
# jobs run as the slot user (nobody), not as their submitter: they read nothing of the submit
# directory but what HTCondor transfers, as on a grid worker node
STARTER_ALLOW_RUNAS_OWNER = False
"""


def run(*args: object, timeout: float = 120, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        **kwargs,
    )


def tail(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"


def in_chroot(
    *args: object, user: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """A command inside the chroot, as root or (user=True) as the submitting user."""
    userspec = [f"--userspec={USER}:{USER}"] if user else []
    env = {**CHROOT_ENV, "USER": USER if user else "root"}
    return run(
        "chroot",
        *userspec,
        CHROOT,
        "/usr/bin/env",
        "-i",
        *(f"{k}={v}" for k, v in env.items()),
        *args,
        timeout=timeout,
    )


def build_chroot() -> None:
    """debootstrap + htcondor in CHROOT.build, renamed to CHROOT once complete."""
    build = CHROOT.with_name(CHROOT.name + ".build")
    if not (build / ".bb-debootstrap-done").exists():
        if shutil.which("debootstrap") is None:
            installed = run("apt-get", "install", "-y", "debootstrap", timeout=300)
            if installed.returncode != 0 or shutil.which("debootstrap") is None:
                unavailable(
                    f"debootstrap unavailable (apt-get install debootstrap: {tail(installed)})"
                )
        shutil.rmtree(build, ignore_errors=True)
        try:
            made = run("debootstrap", "--variant=minbase", "trixie", build, MIRROR, timeout=900)
        except subprocess.TimeoutExpired:
            unavailable(f"debootstrap of trixie from {MIRROR} took over 900 s")
        if made.returncode != 0:
            unavailable(f"debootstrap of trixie from {MIRROR} failed: {tail(made)}")
        (build / ".bb-debootstrap-done").touch()
    shutil.copy("/etc/resolv.conf", build / "etc" / "resolv.conf")
    env = [f"{k}={v}" for k, v in CHROOT_ENV.items()]
    script = f"apt-get update && apt-get install -y htcondor {' '.join(PYTHON_LIBRARIES)}"
    try:
        installed = run(
            "chroot", build, "/usr/bin/env", "-i", *env, "sh", "-c", script, timeout=900
        )
    except subprocess.TimeoutExpired:
        unavailable("apt-get install htcondor inside the chroot took over 900 s")
    if installed.returncode != 0:
        unavailable(f"apt-get install htcondor inside the chroot failed: {tail(installed)}")
    (build / ".bb-ready").touch()
    build.rename(CHROOT)


def python_sources() -> list[Path]:
    """Host directories that the venv's Python (`sys.executable`) needs inside the chroot.

    This checkout (the venv and the src/ of the editable install), the venv and the package
    wherever they live, and the base interpreter's installation, both as named and with
    symlinks resolved (the venv's bin/python links to the base interpreter).
    """
    named = [
        CHECKOUT,
        Path(sys.prefix),
        Path(balanced_batches.__file__).parents[1],
        Path(sys.base_prefix),
        Path(sys.executable).parent,
    ]
    return [
        *named,
        *(path.resolve() for path in named),
        Path(os.path.realpath(sys.executable)).parent,
    ]


def outermost(paths: Iterable[Path]) -> list[Path]:
    """The absolute paths that lie inside no other of them (one bind mount covers those)."""
    kept: list[Path] = []
    for path in sorted({Path(os.path.abspath(p)) for p in paths}):
        if not any(path.is_relative_to(outer) for outer in kept):
            kept.append(path)
    return kept


@dataclass
class Mounts:
    """Mount points inside the chroot, undone in reverse order.

    A bind mount gets its mount point and the missing directories above it created (0755) and
    the chroot's directories above it opened for others (modes saved), so that the jobs' user
    reaches it; `undo` restores the modes and removes the directories it created.
    """

    points: list[Path] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)
    modes: dict[Path, int] = field(default_factory=dict)

    def bind(self, source: Path, *, over_chroot: bool = False) -> None:
        """`source` at the same path in the chroot; over the chroot's own files only if asked."""
        target = CHROOT.resolve() / str(source).lstrip("/")
        if target.resolve() != target:  # a symlink may lead out of the chroot
            unavailable(f"mount --bind {source} {target}: a symlink of the chroot is on the way")
        if os.path.ismount(target):
            unavailable(f"{target} is still mounted (by an interrupted earlier run?): umount it")
        if (
            not over_chroot
            and target.exists()
            and any(not path.is_dir() or path.is_symlink() for path in target.rglob("*"))
        ):
            unavailable(
                f"mount --bind {source} {target} would hide the chroot's own files there: "
                "the venv's Python must come from outside the system directories (a pyenv, "
                "uv or conda Python, not /usr/bin/python3)"
            )
        missing = [d for d in [target, *target.parents] if not d.exists()]
        for directory in reversed(missing):
            directory.mkdir()
            directory.chmod(0o755)
            self.created.append(directory)
        # e.g. the chroot's /root (0700) above a pyenv Python under /root/.pyenv
        open_for_others(target.parent, CHROOT, self.modes)
        bound = run("mount", "--bind", source, target)
        if bound.returncode != 0:
            unavailable(f"mount --bind {source} {target}: {tail(bound)}")
        self.points.append(target)

    def proc(self) -> None:
        target = CHROOT / "proc"
        mounted = run("mount", "-t", "proc", "proc", target)
        if mounted.returncode != 0:
            unavailable(f"mount -t proc {target}: {tail(mounted)}")
        self.points.append(target)

    def undo(self) -> list[str]:
        problems = []
        for target in reversed(self.points):
            undone = run("umount", target)
            if undone.returncode != 0:
                undone = run("umount", "-l", target)
            if undone.returncode != 0:
                problems.append(f"umount {target}: {tail(undone)}")
        self.points.clear()
        for directory, mode in self.modes.items():
            with contextlib.suppress(OSError):
                directory.chmod(mode)
        self.modes.clear()
        if not problems:  # never remove a directory that may still be a mount point
            for directory in reversed(self.created):
                with contextlib.suppress(OSError):
                    directory.rmdir()  # only ever empty once unmounted
            self.created.clear()
        return problems


@dataclass(frozen=True)
class Pool:
    """A running personal pool in CHROOT, with a scratch directory outside /tmp.

    DAGMan (DAGMAN_USE_STRICT) refuses a node log under /tmp, and the DAG's node log goes next
    to the .dag file: the exported jobs directory lives in `scratch`, mounted at the same path.
    """

    scratch: Path

    def logs(self) -> str:
        directory = CHROOT / "var" / "log" / "condor"
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-2500:]}"
            for path in sorted(directory.glob("*Log"))
        )

    def submit(
        self, *args: object, cwd: Path, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return in_chroot(
            "sh", "-c", f'cd "{cwd}" && exec "$@"', "submit", *args, user=True, timeout=timeout
        )

    def queue(self) -> list[list[str]]:
        listed = in_chroot(
            "condor_q",
            "-allusers",
            "-nobatch",
            "-af",
            "ClusterId",
            "ProcId",
            "JobStatus",
            "Cmd",
            "HoldReason",
        )
        assert listed.returncode == 0, tail(listed)
        return [line.split(None, 4) for line in listed.stdout.splitlines() if line.strip()]

    def remove_all(self) -> None:
        in_chroot("condor_rm", "-all")


def add_user() -> None:
    """The unprivileged submitter, added straight to the chroot's passwd and group files."""
    etc = CHROOT / "etc"
    if f"\n{USER}:" not in "\n" + (etc / "passwd").read_text():
        with (etc / "passwd").open("a") as handle:
            handle.write(f"{USER}:x:{UID}:{UID}::/tmp:/bin/sh\n")
        with (etc / "group").open("a") as handle:
            handle.write(f"{USER}:x:{UID}:\n")


def open_for_others(path: Path, stop: Path, saved: dict[Path, int]) -> None:
    """Lets others traverse every directory from `stop` down to `path` (modes saved)."""
    path = path.resolve()
    stop = stop.resolve()
    for directory in [path, *path.parents]:
        if directory.is_dir() and directory not in saved:
            saved[directory] = directory.stat().st_mode & 0o7777
            directory.chmod(saved[directory] | 0o055)
        if directory == stop:
            break


def writable_by_all(directory: Path) -> None:
    """chmod -R a+rwX: the jobs run as the submitting user."""
    directory.mkdir(parents=True, exist_ok=True)
    made = run("chmod", "-R", "a+rwX", directory)
    assert made.returncode == 0, tail(made)


def stop_master(master: subprocess.Popen[bytes]) -> None:
    if master.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            master.send_signal(signal.SIGQUIT)  # fast shutdown of the master and its daemons
        try:
            master.wait(timeout=30)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()


@contextlib.contextmanager
def chroot_lock() -> Iterator[None]:
    """Holds LOCK while building or running the pool: one test run at a time uses the chroot."""
    with LOCK.open("a") as handle:
        deadline = time.monotonic() + LOCK_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    unavailable(f"{CHROOT} was in use by another run for {LOCK_SECONDS} s ({LOCK})")
                time.sleep(2)
        yield  # the lock goes with the file's closing


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """condor_master of the cached chroot on 127.0.0.1, up until a slot is unclaimed."""
    if sys.platform != "linux" or os.geteuid() != 0:
        impossible_here("the HTCondor chroot needs Linux and root (debootstrap, chroot, mount)")
    if shutil.which("chroot") is None or shutil.which("mount") is None:
        unavailable("chroot or mount missing (apt-get install coreutils mount)")
    with chroot_lock():
        yield from running_pool(tmp_path_factory.getbasetemp().resolve())


def running_pool(basetemp: Path) -> Iterator[Pool]:
    """The pool, with this checkout's venv and pytest's `basetemp` mounted into the chroot."""
    if not (CHROOT / ".bb-ready").exists():
        build_chroot()
    add_user()
    (CHROOT / "etc" / "condor" / "config.d" / "99-balanced-batches-test.conf").write_text(CONFIG)
    spool = CHROOT / "var" / "lib" / "condor" / "spool"
    for stale in spool.glob("job_queue.log*"):  # jobs left by an interrupted earlier run
        stale.unlink()
    scratch = Path(tempfile.mkdtemp(prefix="bb-htcondor-jobs-", dir="/var/tmp"))
    scratch.chmod(0o777)
    saved_modes: dict[Path, int] = {}
    mounts = Mounts()
    master: subprocess.Popen[bytes] | None = None
    try:
        mounts.proc()
        mounts.bind(Path("/dev"), over_chroot=True)
        # the tmpfs of POSIX semaphores and shared memory, which a bind of /dev leaves out: a
        # Dask nanny's multiprocessing lock needs it, as on any worker node
        mounts.bind(Path("/dev/shm"), over_chroot=True)
        for source in outermost([*python_sources(), basetemp, scratch]):
            open_for_others(source, source, saved_modes)
            mounts.bind(source)
        python = in_chroot(
            sys.executable,
            "-c",
            "import balanced_batches, uproot, numpy; print(balanced_batches.__file__)",
            user=True,
        )
        if python.returncode != 0 or python.stdout.strip() != balanced_batches.__file__:
            unavailable(
                f"the venv's Python {sys.executable} does not import this checkout's "
                f"{balanced_batches.__file__} inside the chroot as {USER}: {tail(python)}"
            )
        env = [f"{k}={v}" for k, v in CHROOT_ENV.items()]
        log = (CHROOT / "var" / "tmp" / "condor_master.stdout").open("wb")
        master = subprocess.Popen(
            ["chroot", str(CHROOT), "/usr/bin/env", "-i", *env, "condor_master", "-f"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_SECONDS
        slots = ""
        while time.monotonic() < deadline:
            if master.poll() is not None:
                unavailable(f"condor_master exited during start-up\n{Pool(scratch).logs()}")
            status = in_chroot("condor_status", "-af", "Name", "State")
            slots = status.stdout.strip() or status.stderr.strip()
            schedd = in_chroot("condor_q", "-allusers", "-totals")
            if "Unclaimed" in slots and schedd.returncode == 0:
                break
            time.sleep(1)
        else:
            unavailable(
                f"no unclaimed HTCondor slot within {STARTUP_SECONDS} s (condor_status: {slots!r})"
                f"\n{Pool(scratch).logs()}"
            )
        yield Pool(scratch)
    finally:
        if master is not None:
            with contextlib.suppress(Exception):
                Pool(scratch).remove_all()
            stop_master(master)
        problems = mounts.undo()
        for directory, mode in saved_modes.items():
            with contextlib.suppress(OSError):
                directory.chmod(mode)
        if not problems:  # never remove a directory that may still be mounted
            shutil.rmtree(scratch, ignore_errors=True)
        assert not problems, "\n".join(problems)


def job_logs(directory: Path) -> str:
    return "\n".join(
        f"--- {path}\n{path.read_text(errors='replace')[-2000:]}"
        for path in sorted(directory.rglob("*.out")) + sorted(directory.rglob("*.err"))
    )


def wait_until_done(pool: Pool, timeout: float, scan: Path) -> None:
    """Polls condor_q until the queue is empty; fails on a held job or the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = pool.queue()
        if not jobs:
            return
        held = [job for job in jobs if job[2] == "5"]
        if held:
            pool.remove_all()
            pytest.fail(f"held jobs: {held}\n{job_logs(scan)}\n{pool.logs()}")
        time.sleep(1)
    jobs = pool.queue()
    pool.remove_all()
    pytest.fail(f"jobs left after {timeout} s: {jobs}\n{job_logs(scan)}\n{pool.logs()}")


def planned_on_xrootd(
    tmp_path: Path, dataset: Dataset, server_url: str, name: str, extra: str = ""
) -> Path:
    """The reference production counted and planned with its parts in `<name>-scratch` and
    its outputs in `<name>-out` on the XRootD server; `extra` goes into the project YAML."""
    workdir = tmp_path / "work"
    cli(*count_args(workdir, dataset.file_list))
    scratch = f"execution: {{scratch: '{server_url}/{name}-scratch'}}"
    project = project_yaml(tmp_path / "project.yaml", f"{scratch}\n{extra}")
    outputs = f"{server_url}/{name}-out"
    cli(*reference_plan_args(workdir), "--config", project, "--output-directory", outputs)
    return workdir


def readable_by_all(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The slot user, another user, reads the dataset's files."""
    run("chmod", "-R", "a+rX", Path(dataset.file_list).parent)
    open_for_others(Path(dataset.file_list).parent, tmp_path_factory.getbasetemp().resolve(), {})


def test_exported_dag_runs_on_a_personal_pool_and_reproduces_run(
    pool: Pool,
    tmp_path: Path,
    dataset: Dataset,
    reference: Production,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    workdir = tmp_path / "work"
    cli(*count_args(workdir, dataset.file_list))
    cli(*reference_plan_args(workdir))
    production = Production(workdir)
    jobs = Path(tempfile.mkdtemp(prefix="jobs-", dir=pool.scratch))
    cli("export-jobs", "--workdir", workdir, "--system", "htcondor", "--directory", jobs)
    dag = jobs / "balanced-batches.dag"
    assert dag.is_file()
    # the jobs (and DAGMan) run as the unprivileged user: they read the dataset and write the
    # outputs, the scratch files, the records and DAGMan's own files
    basetemp = tmp_path_factory.getbasetemp().resolve()
    saved: dict[Path, int] = {}
    for path in (Path(dataset.file_list).parent, tmp_path):
        open_for_others(path, basetemp, saved)
    run("chmod", "-R", "a+rX", Path(dataset.file_list).parent)
    for directory in (workdir, production.outdir, workdir / "scratch", jobs, jobs / "records"):
        writable_by_all(directory)

    started = time.monotonic()
    submitted = pool.submit("condor_submit_dag", "-force", dag.name, cwd=jobs)
    assert submitted.returncode == 0, tail(submitted)
    wait_until_done(pool, JOBS_SECONDS, jobs)
    elapsed = time.monotonic() - started
    dagman_out = (jobs / f"{dag.name}.dagman.out").read_text(errors="replace")
    assert "EXITING WITH STATUS 0" in dagman_out, f"{dagman_out[-3000:]}\n{job_logs(jobs)}"
    print(f"DAG finished on the pool in {elapsed:.1f} s")

    made = production.outputs()
    assert_same_bytes(made, reference)
    # written by the pool's jobs, which ran as the slot user, not as their submitter
    assert {path.stat().st_uid for path in made} == {NOBODY}
    status = cli("status", "--workdir", workdir).stdout
    assert "batch-job records" in status, status
    assert "failed" not in status.split("jobs")[-1].split("\n", 3)[-1], status
    cli("check", "--workdir", workdir)


def test_jobs_that_cannot_read_the_submit_directory_run_with_everything_on_xrootd(
    pool: Pool,
    tmp_path: Path,
    dataset: Dataset,
    reference: Production,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The DAG is submitted from a 0700 home of the submitter; the jobs run as another user,
    with only the files HTCondor transfers, and keep their parts, records and outputs on an
    XRootD server on the host's loopback: `status` folds the records in from the server,
    `check` passes and the outputs are the reference's, byte for byte."""
    from xrootd_server import running_server

    with running_server() as server:
        workdir = planned_on_xrootd(tmp_path, dataset, server.url, "grid")
        home = Path(tempfile.mkdtemp(prefix="home-", dir=pool.scratch))
        jobs = home / "jobs"
        cli("export-jobs", "--workdir", workdir, "--system", "htcondor", "--directory", jobs)
        run("chown", "-R", f"{UID}:{UID}", home)
        home.chmod(0o700)  # the jobs, running as another user, cannot read the submit directory
        readable_by_all(dataset, tmp_path_factory)

        submitted = pool.submit("condor_submit_dag", "-force", "balanced-batches.dag", cwd=jobs)
        assert submitted.returncode == 0, tail(submitted)
        wait_until_done(pool, JOBS_SECONDS, jobs)
        dagman_out = (jobs / "balanced-batches.dag.dagman.out").read_text(errors="replace")
        assert "EXITING WITH STATUS 0" in dagman_out, f"{dagman_out[-3000:]}\n{job_logs(jobs)}"

        assert_same_bytes(sorted((server.export / "grid-out").glob("batch*.root")), reference)
        status = cli("status", "--workdir", workdir).stdout
        assert "batch-job records from root://" in status, status
        cli("check", "--workdir", workdir)


def test_dask_jobqueue_workers_as_htcondor_jobs_with_parts_on_xrootd(
    pool: Pool,
    tmp_path: Path,
    dataset: Dataset,
    reference: Production,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`run --cluster htcondor` from inside the pool, as the submitter: the Dask workers are
    HTCondor jobs that run as the slot user and keep the parts and outputs on an XRootD server.
    The outputs are the reference's, byte for byte, and nothing is left on the server."""
    pytest.importorskip("dask_jobqueue")
    from xrootd_server import running_server

    with running_server() as server:
        # a set-up line with the shell's quotes and ${...}, as the bearer-token line has: it
        # reaches the worker's shell intact through HTCondor's quoting of the arguments
        marker = tmp_path / "setup-ran"
        setup = (
            f'if [ -n "${{_CONDOR_SCRATCH_DIR:-}}" ] && [ -d "$_CONDOR_SCRATCH_DIR" ]; '
            f'then touch "{marker}"; fi'
        )
        batch = f"batch: {{setup: [{json.dumps(setup)}]}}"
        workdir = planned_on_xrootd(tmp_path, dataset, server.url, "dask", batch)
        readable_by_all(dataset, tmp_path_factory)
        writable_by_all(tmp_path)
        executable = Path(sys.executable).parent / "balanced-batches"
        command = [executable, "run", "--workdir", workdir, "--cluster", "htcondor", "--workers", 2]
        finished = pool.submit(*command, cwd=tmp_path, timeout=JOBS_SECONDS)
        assert finished.returncode == 0, f"{tail(finished)}\n{job_logs(tmp_path)}\n{pool.logs()}"

        assert_same_bytes(sorted((server.export / "dask-out").glob("batch*.root")), reference)
        assert list((server.export / "dask-scratch").iterdir()) == []
        assert marker.exists()
        worker_logs = sorted(p.name for p in (workdir / "cluster-logs").iterdir())
        assert [name for name in worker_logs if name.endswith(".err")], worker_logs
        cli("check", "--workdir", workdir)
