"""Remote stores for reading: XRootD (`root://`) and any other fsspec URL, behind one small
interface.

Every scheme is a plug-in: `STORES` maps a URL scheme to a `Store` class, and everything
else (`FsspecStore`) goes through fsspec. Inputs are read by uproot with the store's options
(a client timeout); transient failures (connection refused or reset, timeouts) are retried
with exponential backoff, a missing file is not.

Settings come from the environment, so that Dask workers and batch jobs see the same ones:
`BALANCED_BATCHES_REMOTE_TIMEOUT` (seconds, default 30) and `BALANCED_BATCHES_REMOTE_RETRIES`
(extra attempts, default 3). The XRootD client's own variables (`XRD_CONNECTIONRETRY`,
`XRD_CONNECTIONWINDOW`, ...) are respected.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import re
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..errors import BalancedBatchesError, ConfigError, InputFileError
from .files import adler32_of_chunks, is_url

log = logging.getLogger(__name__)

T = TypeVar("T")

TIMEOUT_ENV = "BALANCED_BATCHES_REMOTE_TIMEOUT"

RETRIES_ENV = "BALANCED_BATCHES_REMOTE_RETRIES"


class TransferError(BalancedBatchesError):
    """An output file could not be copied to, or verified on, its remote directory."""


@dataclass(frozen=True)
class RemoteSettings:
    """How patient remote operations are."""

    timeout_s: float = 30.0
    retries: int = 3  # extra attempts after a transient failure
    backoff_s: float = 0.5  # first pause; doubled after every further failure
    chunk_bytes: int = 8 * 2**20  # upload block size (8 MB blocks ran at ~300 MB/s to XRootD)

    @classmethod
    def from_environment(cls) -> RemoteSettings:
        """Settings from `BALANCED_BATCHES_REMOTE_TIMEOUT` / `..._RETRIES`, else defaults."""
        try:
            timeout = float(os.environ.get(TIMEOUT_ENV, cls.timeout_s))
            retries = int(os.environ.get(RETRIES_ENV, cls.retries))
        except ValueError as err:
            raise ConfigError(f"{TIMEOUT_ENV} / {RETRIES_ENV}: not a number ({err})") from err
        if timeout <= 0 or retries < 0:
            raise ConfigError(f"{TIMEOUT_ENV} must be > 0 and {RETRIES_ENV} >= 0")
        return cls(timeout_s=timeout, retries=retries)

    def pauses(self) -> Iterator[float]:
        """The pause before each retry."""
        for attempt in range(self.retries):
            yield self.backoff_s * 2**attempt


def settings() -> RemoteSettings:
    """The settings in force (read from the environment on every call: it is cheap)."""
    return RemoteSettings.from_environment()


def server_of(url: str) -> str:
    """`scheme://host:port` of a URL (what error messages name)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def join(directory: str, name: str) -> str:
    """A file name inside a directory URL (`root://h//out` + `f` -> `root://h//out/f`)."""
    return directory + name if directory.endswith("/") else f"{directory}/{name}"


_MISSING = re.compile(r"\[3011\]|no such file|not found|does not exist", re.IGNORECASE)

_TRANSIENT = re.compile(
    r"connection|socket|operation expired|timed? ?out|refused|reset by peer|broken pipe"
    r"|unreachable|temporar|\[FATAL\]|I/O operation on closed file|\[3024\]|overloaded",
    re.IGNORECASE,
)


def _causes(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_missing(err: BaseException) -> bool:
    """The error says the file does not exist (never worth a retry)."""
    return any(
        isinstance(e, FileNotFoundError) or (isinstance(e, OSError) and _MISSING.search(str(e)))
        for e in _causes(err)
    )


def is_transient(err: BaseException) -> bool:
    """The error may go away by itself: lost or refused connections, timeouts, overload.

    XRootD reports these as `OSError("... [FATAL] Connection error")` or
    `"[ERROR] Operation expired"`; fsspec-xrootd's handle cache then answers
    `ValueError("I/O operation on closed file")` until it is reset.
    """
    if is_missing(err):
        return False
    return any(
        isinstance(e, (ConnectionError, TimeoutError))
        or (isinstance(e, (OSError, ValueError)) and _TRANSIENT.search(str(e)) is not None)
        for e in _causes(err)
    )


def retry_may_help(err: BaseException) -> bool:
    """Whether another attempt may succeed: some cause of the error is transient (see
    `is_transient`). Our own one-line errors count by their causes, not by their text,
    which names paths."""
    return any(
        is_transient(cause) for cause in _causes(err) if not isinstance(cause, BalancedBatchesError)
    )


_NOISE = re.compile(r"Failed to submit <.*?>> request: |\s+")


def short(err: BaseException) -> str:
    """The first line of an error's innermost message, without object reprs."""
    messages = [str(e).strip() for e in _causes(err) if str(e).strip()]
    text = messages[-1].splitlines()[0] if messages else type(err).__name__
    return _NOISE.sub(lambda m: " " if m.group().isspace() else "", text).strip()[:200]


# Servers whose retries ran out recently (server -> (until, reason)), per process: the
# next files on them fail at once instead of each waiting through every retry again.
UNREACHABLE_HOLD_S = 60.0

_unreachable: dict[str, tuple[float, str]] = {}


def retrying(
    operation: Callable[[], T],
    location: str,
    what: str = "read",
    error: type[BalancedBatchesError] = InputFileError,
    config: RemoteSettings | None = None,
) -> T:
    """`operation()`, retried with backoff while it fails transiently on a remote location.

    Local paths and permanent failures (a missing file, a corrupt one) are not
    retried: their exception passes through. When the retries are used up, `error`
    says in one line which server and file could not be reached, and for
    `UNREACHABLE_HOLD_S` seconds that server's next operations fail at once.
    """
    if not is_url(location):
        return operation()
    server = server_of(location)
    held = _unreachable.get(server)
    if held is not None and held[0] > time.monotonic():
        raise error(f"{location}: cannot {what} on server {server}: unreachable ({held[1]})")
    config = config or settings()
    pauses = config.pauses()
    attempts = 0
    while True:
        attempts += 1
        try:
            result = operation()
        except Exception as err:
            if not is_transient(err):
                raise
            pause = next(pauses, None)
            if pause is None:
                _unreachable[server] = (time.monotonic() + UNREACHABLE_HOLD_S, short(err))
                raise error(
                    f"{location}: cannot {what} on server {server} "
                    f"after {attempts} attempts ({short(err)})"
                ) from err
            log.warning("%s: %s; retrying in %.1f s", location, short(err), pause)
            store_for(location).reset()
            time.sleep(pause)
        else:
            _unreachable.pop(server, None)
            return result


class Store(ABC):
    """One way of reaching files behind URLs of one scheme; methods take full URLs."""

    def __init__(self, scheme: str, config: RemoteSettings) -> None:
        self.scheme, self.config = scheme, config

    @abstractmethod
    def open_options(self) -> dict[str, Any]:
        """Options for `uproot.open` (and fsspec) on this store's URLs."""

    @abstractmethod
    def info(self, url: str) -> dict[str, Any]:
        """fsspec-style information (`size`, `mtime`, `type`); FileNotFoundError if absent."""

    @abstractmethod
    def checksum(self, url: str) -> str:
        """adler32 of a file as 8 hex digits."""

    @abstractmethod
    def upload(self, local: Path, url: str) -> None:
        """Copies a local file to `url`, replacing what is there."""

    @abstractmethod
    def rename(self, source: str, target: str) -> None:
        """Renames `source` to `target`, replacing `target`."""

    @abstractmethod
    def remove(self, url: str) -> None:
        """Deletes a file."""

    @abstractmethod
    def makedirs(self, url: str) -> None:
        """Creates a directory and its parents if missing."""

    @abstractmethod
    def listdir(self, url: str) -> list[str]:
        """URLs of the files directly inside a directory."""

    @abstractmethod
    def reset(self) -> None:
        """Forgets cached connections and handles (before a retry)."""

    @abstractmethod
    def read(self, url: str) -> bytes:
        """A whole (small) file."""

    @abstractmethod
    def read_ranges(self, url: str, starts: list[int], stops: list[int]) -> list[bytes]:
        """The bytes [start, stop) of a file, for every start and stop."""

    @abstractmethod
    def remove_tree(self, url: str) -> None:
        """Deletes a directory and everything in it (FileNotFoundError if it is missing)."""


class FsspecStore(Store):
    """Any protocol fsspec knows; checksums are computed by reading the file back."""

    def filesystem(self, url: str) -> tuple[Any, str]:
        """The fsspec filesystem of a URL, and the URL's path on it."""
        import fsspec

        return fsspec.core.url_to_fs(url, **self.open_options())  # type: ignore[no-any-return]

    def open_options(self) -> dict[str, Any]:
        """None by default: fsspec back-ends name their timeouts differently."""
        return {}

    def info(self, url: str) -> dict[str, Any]:
        """fsspec's `info`; a missing file becomes FileNotFoundError."""
        fs, path = self.filesystem(url)
        with _not_found():
            return dict(fs.info(path))

    def checksum(self, url: str) -> str:
        """adler32 of the bytes read back."""
        fs, path = self.filesystem(url)
        block = self.config.chunk_bytes
        with fs.open(path, "rb", block_size=block) as handle:
            return adler32_of_chunks(iter(lambda: handle.read(block), b""))

    def upload(self, local: Path, url: str) -> None:
        """Streams the file in blocks through `fs.open(path, 'wb')` (`put` is not everywhere)."""
        fs, path = self.filesystem(url)
        block = self.config.chunk_bytes
        with local.open("rb") as source, fs.open(path, "wb", block_size=block) as target:
            shutil.copyfileobj(source, target, block)

    def rename(self, source: str, target: str) -> None:
        """fsspec's `mv`."""
        fs, source_path = self.filesystem(source)
        fs.mv(source_path, self.filesystem(target)[1])

    def remove(self, url: str) -> None:
        """fsspec's `rm` of one file."""
        fs, path = self.filesystem(url)
        fs.rm(path)

    def makedirs(self, url: str) -> None:
        """fsspec's `makedirs`."""
        fs, path = self.filesystem(url)
        fs.makedirs(path, exist_ok=True)

    def listdir(self, url: str) -> list[str]:
        """Files in a directory as URLs of the same form as `url`."""
        fs, path = self.filesystem(url)
        with _not_found():
            entries = fs.ls(path, detail=True, refresh=True)
        # fsspec-xrootd answers `info` of a file from a cached listing of its directory, and
        # fails for a file made after the listing: none is kept
        fs.invalidate_cache(path)
        names = [
            entry["name"].rstrip("/").rsplit("/", 1)[-1]
            for entry in entries
            if entry.get("type") != "directory"
        ]
        return [join(url, name) for name in names]

    def read(self, url: str) -> bytes:
        """fsspec's `open` and `read`."""
        fs, path = self.filesystem(url)
        with _not_found(), fs.open(path, "rb") as handle:
            data: bytes = handle.read()
            return data

    def read_ranges(self, url: str, starts: list[int], stops: list[int]) -> list[bytes]:
        """fsspec's `cat_ranges` (XRootD: vector reads)."""
        fs, path = self.filesystem(url)
        with _not_found():
            chunks = fs.cat_ranges([path] * len(starts), starts, stops)
        for chunk in chunks:
            if isinstance(chunk, Exception):
                raise chunk
        return list(chunks)

    def remove_tree(self, url: str) -> None:
        """fsspec's recursive `rm`."""
        fs, path = self.filesystem(url)
        with _not_found():
            fs.rm(path, recursive=True)

    def reset(self) -> None:
        """Drops fsspec's cached filesystem objects (and their connections) of this scheme."""
        import fsspec

        _drop_read_handles(self.scheme)
        fsspec.get_filesystem_class(self.scheme).clear_instance_cache()


def release_connections() -> None:
    """Lets go of cached remote read handles before the process ends (nothing to do, and
    nothing imported, in a process that reached no remote store)."""
    for scheme in sorted(_USED_SCHEMES & set(STORES)):
        _drop_read_handles(scheme)


def _drop_read_handles(scheme: str) -> None:
    """Closes fsspec-xrootd's cached read handles without waiting for the server.

    Its own finalizer waits for every close and raises when the server is gone, which
    prints a traceback when the process exits after a lost connection.
    """
    import fsspec

    loaded = fsspec.registry.get(scheme)  # None unless a filesystem of it was made
    instances = list(getattr(loaded, "_cache", {}).values())
    for fs in instances:
        handles = getattr(getattr(fs, "_readonly_filehandle_cache", None), "_cache", None)
        if not isinstance(handles, dict):
            continue
        for item in list(handles.values()):
            try:
                item.handle.close(callback=lambda *_: None)  # fire and forget
            except Exception as err:  # a dead connection: nothing left to close
                log.debug("closing a cached read handle: %s", err)
        handles.clear()


@contextmanager
def _not_found() -> Iterator[None]:
    """Turns a back-end's "no such file" OSError (XRootD: `[3011]`) into FileNotFoundError."""
    try:
        yield
    except OSError as err:
        if is_missing(err) and not isinstance(err, FileNotFoundError):
            raise FileNotFoundError(str(err)) from err
        raise


class XRootDStore(FsspecStore):
    """`root://` through fsspec-xrootd, with the server's own adler32 and client timeouts."""

    def __init__(self, scheme: str, config: RemoteSettings) -> None:
        super().__init__(scheme, config)
        _configure_xrootd_client()

    def open_options(self) -> dict[str, Any]:
        """The XRootD client timeout (whole seconds)."""
        return {"timeout": max(1, math.ceil(self.config.timeout_s))}

    def checksum(self, url: str) -> str:
        """The server's adler32 (`xrootd.chksum adler32`); read back if it has none."""
        from XRootD import client
        from XRootD.client.flags import QueryCode

        path = self.filesystem(url)[1]
        status, response = client.FileSystem(server_of(url)).query(
            QueryCode.CHECKSUM, path, timeout=self.open_options()["timeout"]
        )
        if status.ok:
            text = response.decode() if isinstance(response, bytes) else str(response)
            algorithm, _, value = text.strip("\x00").strip().partition(" ")
            if algorithm == "adler32" and value:
                return value.strip().lower().rjust(8, "0")
        message = status.message.strip() if not status.ok else f"answered {response!r}"
        error = OSError(f"checksum query failed: {message}")
        if not status.ok and (is_transient(error) or is_missing(error)):
            raise error
        log.debug("%s: no adler32 from the server (%s): reading the file back", url, message)
        return super().checksum(url)


# XRootD client settings that retries need; environment variables still win.
# TimeoutResolution 15 (default) makes a 5 s timeout expire after 15 s; after a
# stream error the client refuses the server for StreamErrorWindow (1800 s) seconds
# in the same process, so that no retry could ever succeed.
XROOTD_CLIENT_DEFAULTS = {"TimeoutResolution": 1, "StreamErrorWindow": 1}


@functools.cache
def _configure_xrootd_client() -> None:
    from XRootD import client

    for key, value in XROOTD_CLIENT_DEFAULTS.items():
        if f"XRD_{key.upper()}" not in os.environ:
            client.EnvPutInt(key, value)


STORES: dict[str, type[Store]] = {"root": XRootDStore}
# WebDAV (io/webdav.py): davs:// and https:// are the same door (dav://, http://: no TLS)
WEBDAV_SCHEMES = ("davs", "dav", "https", "http")


def _store_class(scheme: str) -> type[Store]:
    if scheme in WEBDAV_SCHEMES:  # imported here: it needs webdav4
        from .webdav import WebDAVStore

        return WebDAVStore
    return STORES.get(scheme, FsspecStore)


def store_for(url: str) -> Store:
    """The store of a URL's scheme; ConfigError naming the supported ones for a scheme no
    installed client speaks."""
    scheme = urlsplit(url).scheme
    if scheme not in (*STORES, *WEBDAV_SCHEMES) and not _fsspec_knows(scheme):
        grid = (
            " (grid storage that speaks SRM or GridFTP serves root:// too: use its XRootD door)"
            if scheme in ("srm", "gsiftp")
            else ""
        )
        raise ConfigError(
            f"{url}: {scheme}:// is not supported{grid}; use a local path, root:// (XRootD) or "
            "davs:// / https:// (WebDAV), or install an fsspec client for it"
        )
    return _store(scheme, settings())


@functools.cache
def _fsspec_knows(scheme: str) -> bool:
    import fsspec

    try:
        fsspec.get_filesystem_class(scheme)
    except (ValueError, ImportError):
        return False
    return True


_USED_SCHEMES: set[str] = set()  # what `release_connections` has to look at


@functools.cache
def _store(scheme: str, config: RemoteSettings) -> Store:
    _USED_SCHEMES.add(scheme)
    return _store_class(scheme)(scheme, config)


def readable(path: str, whole: bool = True) -> str | io.BufferedIOBase:
    """What uproot and pyarrow can open for a path or URL: the same, or, for stores they have
    no reader of (WebDAV), a file object. `whole`: the file's bytes, read in one request (for
    `check`, which reads every row anyway); else a file read by byte ranges, as the reader
    asks for them (`report`, which reads a few branches: only their baskets travel, and only
    a buffer of them is held)."""
    if is_url(path) and urlsplit(path).scheme in WEBDAV_SCHEMES:
        store = store_for(path)
        if not whole:
            size = int(retrying(lambda: store.info(path), path, "stat the file")["size"])
            return io.BufferedReader(RangedFile(path, size), RANGED_BUFFER_BYTES)
        return io.BytesIO(retrying(lambda: store.read(path), path, "read"))
    return path


RANGED_BUFFER_BYTES = 1 << 20  # what one ranged request of a `RangedFile` reads ahead


class RangedFile(io.RawIOBase):
    """A remote file of known size read by byte ranges (`Store.read_ranges`), each read of the
    reader one ranged request, retried as every remote read is."""

    def __init__(self, url: str, size: int) -> None:
        super().__init__()
        self.url, self.size, self._position = url, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(base + offset, 0)
        return self._position

    def readinto(self, buffer: Any) -> int:
        stop = min(self._position + len(buffer), self.size)
        if stop <= self._position:
            return 0
        start, store = self._position, store_for(self.url)
        (data,) = retrying(lambda: store.read_ranges(self.url, [start], [stop]), self.url)
        if len(data) != stop - start:
            raise InputFileError(
                f"{self.url}: asked bytes {start}-{stop - 1}, the server sent {len(data)}"
            )
        memoryview(buffer).cast("B")[: len(data)] = data
        self._position = stop
        return len(data)


def open_options(path: str) -> dict[str, Any]:
    """Extra `uproot.open` options for a path: the client timeout for remote files."""
    return store_for(path).open_options() if is_url(path) else {}


def stat(url: str) -> tuple[int, float]:
    """(size, modification time) of a remote file; one-line InputFileError on failure."""
    try:
        info = retrying(lambda: store_for(url).info(url), url, "stat the file")
    except FileNotFoundError as err:
        raise InputFileError(f"{url}: file not found") from err
    except OSError as err:
        raise InputFileError(
            f"{url}: cannot stat the file on server {server_of(url)} ({short(err)})"
        ) from err
    return int(info.get("size") or 0), float(info.get("mtime") or 0)
