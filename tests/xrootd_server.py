"""A real XRootD server on 127.0.0.1 for the tests: started, stopped and restarted on one port.

The daemon refuses to run as root, so it runs as user `xrootd` (`-R xrootd`); its
directories belong to that user and every parent is traversable (0755), which
pytest's `tmp_path` (0700) is not. The export is `oss.localroot`: the URL path
`/x` is the file `<export>/x`. `xrootd.chksum adler32` lets clients ask for checksums.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

USER = "xrootd"
STARTUP_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_plugin_installed() -> bool:
    """True if XRootD's HTTP/WebDAV plugin (libXrdHttp) is installed."""
    return any(
        Path(directory, "libXrdHttp-5.so").exists() or Path(directory, "libXrdHttp.so").exists()
        for directory in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib")
    )


def missing_requirement() -> str | None:
    """Why no server can be started here, or None."""
    if shutil.which("xrootd") is None:
        return "the xrootd binary is missing (apt-get install xrootd-server xrootd-client)"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no user {USER!r} (the Debian xrootd-server package creates it)"
    return None


class XRootDServer:
    """One xrootd daemon exporting `export` read/write, without authentication."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="bb-xrootd-"))
        self.export = self.base / "export"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"root://{self.host}/"  # + "/path" -> root://127.0.0.1:PORT//path
        # the same export over HTTP/WebDAV (XrdHttp, Debian's xrootd-server-plugins)
        self.http_port = free_port()
        self.dav_url = f"dav://127.0.0.1:{self.http_port}"  # + "/path"
        self.log = self.base / "xrootd.log"
        self._process: subprocess.Popen[bytes] | None = None
        account = pwd.getpwnam(USER)
        for directory in (self.base, self.export, self.base / "admin", self.base / "run"):
            directory.mkdir(exist_ok=True)
            directory.chmod(0o755)
            os.chown(directory, account.pw_uid, account.pw_gid)
        self.config = self.base / "xrootd.cfg"
        self.config.write_text(
            "\n".join(
                [
                    f"xrd.port {self.port}",
                    "xrd.network nodnr",
                    "all.export /",
                    f"oss.localroot {self.export}",
                    f"all.adminpath {self.base / 'admin'}",
                    f"all.pidpath {self.base / 'run'}",
                    "xrootd.chksum adler32",
                    *(
                        [f"xrd.protocol XrdHttp:{self.http_port} libXrdHttp.so"]
                        if http_plugin_installed()
                        else []
                    ),
                    "",
                ]
            )
        )

    def url_of(self, local: Path) -> str:
        """The root:// URL of a file or directory under the export."""
        return self.url + "/" + str(local.relative_to(self.export))

    def start(self) -> None:
        """Starts the daemon and waits until it accepts connections."""
        self._process = subprocess.Popen(
            ["xrootd", "-R", USER, "-c", str(self.config), "-l", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"xrootd exited at start; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"xrootd did not listen on {self.host} within {STARTUP_TIMEOUT_S} s")

    def stop(self) -> None:
        """SIGTERM, then waits for the daemon to exit (the port is free again)."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def close(self) -> None:
        """Stops the daemon and deletes its directories."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def running_server() -> Iterator[XRootDServer]:
    """A started server, stopped and deleted at the end; where none can start, the test is
    unavailable (skipped, or failed under BB_REQUIRE_SERVICES=1: `services.unavailable`)."""
    from services import unavailable

    missing = missing_requirement()
    if missing is not None:
        unavailable(missing)
    server = XRootDServer()
    server.start()
    try:
        yield server
    finally:
        server.close()
