"""WebDAV (dav://, the http form of davs://) for intermediate parts and outputs, against two real
servers on 127.0.0.1: XRootD's HTTP door (XrdHttp, as dCache and EOS serve WebDAV beside
XRootD; it answers `Want-Digest: adler32`) and wsgidav, a WebDAV server that is not XRootD
(no checksums: files are read back to verify them).

A run with parts and outputs on a server must write the local run's bytes, verified, and
leave nothing but the outputs there; batch jobs run in empty sandboxes must do the same.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from conftest import Production, cli, project_yaml, reference_plan_args
from faults_util import copy_workdir, output_digests, run_exported_jobs
from services import unavailable
from xrootd_server import free_port, http_plugin_installed, missing_requirement, running_server

T = TypeVar("T")


@dataclass(frozen=True)
class DavServer:
    """A WebDAV server: its URL and the local directory it serves."""

    url: str  # dav://127.0.0.1:PORT
    root: Path
    checksums: bool  # answers Want-Digest: adler32


@pytest.fixture(scope="module")
def xrdhttp() -> Iterator[DavServer]:
    """XRootD with its HTTP/WebDAV plugin."""
    if missing_requirement() is None and not http_plugin_installed():
        unavailable("XRootD's HTTP plugin is missing (apt-get install xrootd-server-plugins)")
    with running_server() as server:
        _wait_for(server.http_port)
        yield DavServer(server.dav_url, server.export, checksums=True)


@pytest.fixture(scope="module")
def wsgidav() -> Iterator[DavServer]:
    """wsgidav (PyPI) serving a temporary directory, anonymous read/write."""
    executable = Path(sys.executable).parent / "wsgidav"
    if not executable.exists():
        unavailable("wsgidav is not installed (pip install wsgidav cheroot)")
    root = Path(tempfile.mkdtemp(prefix="bb-wsgidav-"))
    port = free_port()
    command = [str(executable), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--root", str(root), "--auth", "anonymous", "--no-config", "-q"]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        try:
            _wait_for(port)
            yield DavServer(f"dav://127.0.0.1:{port}", root, checksums=False)
        finally:
            process.terminate()
            process.wait(timeout=10)
            shutil.rmtree(root, ignore_errors=True)


def _wait_for(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no WebDAV server on port {port}")


@pytest.fixture(params=["xrdhttp", "wsgidav"])
def dav(request: pytest.FixtureRequest) -> DavServer:
    """Each server in turn."""
    server: DavServer = request.getfixturevalue(request.param)
    return server


def adler32(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}"


def planned_on(dav: DavServer, reference: Production, tmp_path: Path, name: str) -> Path:
    """The reference's counts, planned with parts and outputs on the server."""
    workdir = copy_workdir(reference.workdir, tmp_path / "work")
    config = project_yaml(
        tmp_path / "project.yaml", f"execution: {{scratch: '{dav.url}/{name}/scratch'}}"
    )
    output = f"{dav.url}/{name}/out"
    cli(*reference_plan_args(workdir), "--config", config, "--output-directory", output)
    return workdir


def test_parts_and_outputs_on_a_webdav_server(
    dav: DavServer, reference: Production, tmp_path: Path
) -> None:
    name = f"run-{tmp_path.name}"
    workdir = planned_on(dav, reference, tmp_path, name)
    cli("run", "--workdir", workdir, "--workers", 1)
    out = dav.root / name / "out"
    assert output_digests(out) == output_digests(reference.outdir)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*output_digests(reference.outdir), "provenance.json", "statistics.json"]
    )
    assert list((dav.root / name / "scratch").iterdir()) == []  # the plan's directory is gone
    result = cli("run", "--workdir", workdir, "--workers", 1).stdout
    assert "entries" in result  # nothing left to do, the outputs intact
    assert "all outputs match the plan" in cli("check", "--workdir", workdir).stdout


def test_batch_jobs_in_sandboxes_with_everything_on_a_webdav_server(
    wsgidav: DavServer, reference: Production, tmp_path: Path
) -> None:
    workdir = planned_on(wsgidav, reference, tmp_path, "jobs")
    jobs = tmp_path / "jobs"
    cli("export-jobs", "--workdir", workdir, "--system", "slurm", "--directory", jobs)
    listed = run_exported_jobs(jobs, tmp_path)
    out = wsgidav.root / "jobs" / "out"
    assert output_digests(out) == output_digests(reference.outdir)
    (plan_directory,) = (wsgidav.root / "jobs" / "scratch").iterdir()
    assert sorted(p.name for p in plan_directory.iterdir()) == ["records"]
    status = cli("status", "--workdir", workdir).stdout
    assert f"took {len(listed)} batch-job records from dav://" in status
    assert "all outputs match the plan" in cli("check", "--workdir", workdir).stdout
    for path in out.glob("batch*.root"):
        assert adler32(path) == adler32(reference.outdir / path.name)


def with_peak_memory(work: Callable[[], T]) -> tuple[T, int]:
    """What `work()` returns, and the most bytes Python held for it at once (tracemalloc)."""
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_server_without_checksums_has_files_read_back_a_chunk_at_a_time(
    wsgidav: DavServer,
) -> None:
    """wsgidav answers no `Want-Digest`: the adler32 is that of the bytes read back, and
    reading back a 32 MB file holds a few chunks in memory, not the file."""
    from balanced_batches.io.stores import store_for

    content = np.random.default_rng(7).integers(0, 256, 32 << 20, dtype=np.uint8).tobytes()
    (wsgidav.root / "big.bin").write_bytes(content)
    url = f"{wsgidav.url}/big.bin"
    store = store_for(url)
    store.info(url)  # the client and its connection made before measuring
    checksum, peak = with_peak_memory(lambda: store.checksum(url))
    assert checksum == f"{zlib.adler32(content) & 0xFFFFFFFF:08x}"
    assert peak < 8 << 20, f"{peak / 2**20:.1f} MB held while reading back 32 MB"


def test_report_reads_the_branches_it_needs_by_byte_ranges(wsgidav: DavServer) -> None:
    """`report` reads an output on a WebDAV server by byte ranges: the branch it asks for is
    read right, without the file's 14 MB of other branches in memory."""
    import uproot

    from balanced_batches.stages.report_outputs import output_chunks

    entries = 2_000_000
    small = (np.arange(entries) % 7).astype(np.int8)
    with uproot.recreate(wsgidav.root / "wide.root") as output:
        output.mktree("taus", {"big": np.float64, "small": np.int8})
        output["taus"].extend({"big": np.random.default_rng(3).random(entries), "small": small})
    url = f"{wsgidav.url}/wide.root"
    assert (wsgidav.root / "wide.root").stat().st_size > 14 << 20
    list(output_chunks(url, "root", "taus", ["small"]))  # imports and the client made first
    chunks, peak = with_peak_memory(lambda: list(output_chunks(url, "root", "taus", ["small"])))
    assert np.array_equal(np.concatenate([chunk["small"] for chunk in chunks]), small)
    # read whole, the file's bytes and their copies held 29 MB
    assert peak < 12 << 20, f"{peak / 2**20:.1f} MB held to read a 2 MB branch"
    # Parquet outputs go through the same ranged file, into pyarrow
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"big": np.zeros(1000), "small": small[:1000]}), wsgidav.root / "x.pq")
    (chunk,) = output_chunks(f"{wsgidav.url}/x.pq", "parquet", "taus", ["small"])
    assert np.array_equal(chunk["small"], small[:1000])


def test_https_and_davs_urls_are_the_same_webdav_door() -> None:
    from balanced_batches.io.stores import store_for
    from balanced_batches.io.webdav import WebDAVStore, _base_and_path

    for url in ("davs://door.example.org:2880/pnfs/x", "https://door.example.org:2880/pnfs/x"):
        assert isinstance(store_for(url), WebDAVStore)
        assert _base_and_path(url) == ("https://door.example.org:2880", "/pnfs/x")
    assert _base_and_path("dav://127.0.0.1:8080/a/b") == ("http://127.0.0.1:8080", "/a/b")


def test_the_bearer_token_is_read_anew_for_every_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token renewed while a job runs is the one the next request carries."""
    import httpx

    from balanced_batches.io.webdav import bearer_auth

    token = tmp_path / "token"
    monkeypatch.setenv("BEARER_TOKEN_FILE", str(token))
    monkeypatch.delenv("BEARER_TOKEN", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    auth = bearer_auth()
    for value in ("first", "renewed"):
        token.write_text(value + "\n")
        request = next(auth.auth_flow(httpx.Request("GET", "https://door.example.org/x")))
        assert request.headers["Authorization"] == f"Bearer {value}"
    token.unlink()
    request = next(auth.auth_flow(httpx.Request("GET", "https://door.example.org/x")))
    assert "Authorization" not in request.headers
