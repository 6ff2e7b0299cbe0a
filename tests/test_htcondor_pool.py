"""A real personal HTCondor pool runs the exported DAG and reproduces `run` byte for byte.

The pool lives in a Debian trixie chroot (`debootstrap --variant=minbase trixie`, then
`apt-get install htcondor` inside it), cached under CHROOT so that only the first run pays for
the download (~35 s, 520 MB). The daemons run as root inside the chroot with a personal-pool
configuration on loopback; the jobs are submitted by an unprivileged user of the chroot. The
package's venv (/work), its Python (/root/.pyenv) and pytest's temporary directories are
bind-mounted at the same paths inside the chroot, since the exported submit files and job.sh
name absolute paths. Without root, without debootstrap or the Debian mirror, or when the pool
does not come up in time, the module is skipped; the daemons are always stopped and every
mount undone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import Dataset, Production, cli, count_args, reference_plan_args

pytestmark = pytest.mark.slow

CHROOT = Path(os.environ.get("BB_HTCONDOR_CHROOT", "/var/tmp/bb-htcondor-chroot"))
MIRROR = os.environ.get("BB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# the package's Python is a pyenv CPython built on the host; these are the system libraries
# its interpreter and extension modules link to (trixie names)
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
                pytest.skip(
                    f"debootstrap unavailable (apt-get install debootstrap: {tail(installed)})"
                )
        shutil.rmtree(build, ignore_errors=True)
        try:
            made = run("debootstrap", "--variant=minbase", "trixie", build, MIRROR, timeout=900)
        except subprocess.TimeoutExpired:
            pytest.skip(f"debootstrap of trixie from {MIRROR} took over 900 s")
        if made.returncode != 0:
            pytest.skip(f"debootstrap of trixie from {MIRROR} failed: {tail(made)}")
        (build / ".bb-debootstrap-done").touch()
    shutil.copy("/etc/resolv.conf", build / "etc" / "resolv.conf")
    env = [f"{k}={v}" for k, v in CHROOT_ENV.items()]
    script = f"apt-get update && apt-get install -y htcondor {' '.join(PYTHON_LIBRARIES)}"
    try:
        installed = run(
            "chroot", build, "/usr/bin/env", "-i", *env, "sh", "-c", script, timeout=900
        )
    except subprocess.TimeoutExpired:
        pytest.skip("apt-get install htcondor inside the chroot took over 900 s")
    if installed.returncode != 0:
        pytest.skip(f"apt-get install htcondor inside the chroot failed: {tail(installed)}")
    (build / ".bb-ready").touch()
    build.rename(CHROOT)


@dataclass
class Mounts:
    """Mount points inside the chroot, undone in reverse order."""

    points: list[Path] = field(default_factory=list)
    created: set[Path] = field(default_factory=set)

    def bind(self, source: Path) -> None:
        target = CHROOT / str(source).lstrip("/")
        if not target.exists():
            target.mkdir(parents=True)
            self.created.add(target)
        bound = run("mount", "--bind", source, target)
        if bound.returncode != 0:
            pytest.skip(f"mount --bind {source} {target}: {tail(bound)}")
        self.points.append(target)

    def proc(self) -> None:
        target = CHROOT / "proc"
        mounted = run("mount", "-t", "proc", "proc", target)
        if mounted.returncode != 0:
            pytest.skip(f"mount -t proc {target}: {tail(mounted)}")
        self.points.append(target)

    def undo(self) -> list[str]:
        problems = []
        for target in reversed(self.points):
            undone = run("umount", target)
            if undone.returncode != 0:
                undone = run("umount", "-l", target)
            if undone.returncode != 0:
                problems.append(f"umount {target}: {tail(undone)}")
            elif target in self.created:
                with contextlib.suppress(OSError):
                    target.rmdir()  # only ever an empty mount point
        self.points.clear()
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

    def submit(self, *args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
        return in_chroot("sh", "-c", f'cd "{cwd}" && exec "$@"', "submit", *args, user=True)

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


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """condor_master of the cached chroot on 127.0.0.1, up until a slot is unclaimed."""
    if os.geteuid() != 0:
        pytest.skip("the HTCondor chroot needs root (debootstrap, chroot, mount)")
    if shutil.which("chroot") is None or shutil.which("mount") is None:
        pytest.skip("chroot or mount missing")
    if not (CHROOT / ".bb-ready").exists():
        build_chroot()
    add_user()
    (CHROOT / "root").chmod(0o755)  # the venv's interpreter lives under /root/.pyenv
    (CHROOT / "etc" / "condor" / "config.d" / "99-balanced-batches-test.conf").write_text(CONFIG)
    spool = CHROOT / "var" / "lib" / "condor" / "spool"
    for stale in spool.glob("job_queue.log*"):  # jobs left by an interrupted earlier run
        stale.unlink()
    basetemp = tmp_path_factory.getbasetemp().resolve()
    saved_modes: dict[Path, int] = {}
    open_for_others(basetemp, basetemp, saved_modes)
    scratch = Path(tempfile.mkdtemp(prefix="bb-htcondor-jobs-", dir="/var/tmp"))
    scratch.chmod(0o777)
    mounts = Mounts()
    master: subprocess.Popen[bytes] | None = None
    try:
        mounts.proc()
        mounts.bind(Path("/dev"))
        mounts.bind(Path("/work"))
        mounts.bind(Path("/root/.pyenv"))
        mounts.bind(basetemp)
        mounts.bind(scratch)
        python = in_chroot(
            "/work/main/.venv/bin/python", "-c", "import balanced_batches, uproot, numpy", user=True
        )
        if python.returncode != 0:
            pytest.skip(f"the venv's Python does not run inside the chroot: {tail(python)}")
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
                pytest.skip(f"condor_master exited during start-up\n{Pool(scratch).logs()}")
            status = in_chroot("condor_status", "-af", "Name", "State")
            slots = status.stdout.strip() or status.stderr.strip()
            schedd = in_chroot("condor_q", "-allusers", "-totals")
            if "Unclaimed" in slots and schedd.returncode == 0:
                break
            time.sleep(1)
        else:
            pytest.skip(
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
    assert [p.name for p in made] == [p.name for p in reference.outputs()]
    assert made
    # written by the pool's jobs, which ran as the unprivileged submitter
    assert {path.stat().st_uid for path in made} == {UID}
    for ours, theirs in zip(made, reference.outputs(), strict=True):
        assert ours.read_bytes() == theirs.read_bytes(), ours.name
    status = cli("status", "--workdir", workdir).stdout
    assert "batch-job records" in status, status
    assert "failed" not in status.split("jobs")[-1].split("\n", 3)[-1], status
    cli("check", "--workdir", workdir)
