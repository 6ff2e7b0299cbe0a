"""Output directories: where finished output files go, local or remote.

Local outputs land by atomic rename (`files.atomic_path`). Remote ones are written locally
first, then copied with `copy_verified`: to `<name>.part-<token>` on the server, compared in
size and adler32 with the local file, renamed to the final name. A partial copy never carries
the final name, and two jobs that publish the same file (`provenance.json`) never share one.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import BalancedBatchesError, ConfigError
from .files import TEMPORARY_SUFFIX, adler32_of, is_url, remove_temporaries, write_json
from .stores import (
    RemoteSettings,
    Store,
    TransferError,
    is_transient,
    join,
    retrying,
    server_of,
    settings,
    short,
    store_for,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Published:
    """A finished output file under its final name."""

    path: str
    size: int
    adler32: str


def copy_verified(local: Path, url: str, config: RemoteSettings | None = None) -> Published:
    """Copies a local file to `url` through `<url>.part-<token>`, verified, then renamed.

    The copy is checked against the local file's size and adler32 (the server's
    checksum for XRootD); a transient failure or a mismatch is retried with
    backoff. Only a verified copy is renamed to the final name.
    """
    config = config or settings()
    store = store_for(url)
    size, checksum = local.stat().st_size, adler32_of(local)
    # a name of this copy's own: concurrent jobs publish the same provenance.json, and one's
    # rename must not take away the other's partial copy
    partial = f"{url}{TEMPORARY_SUFFIX}-{secrets.token_hex(6)}"
    pauses = config.pauses()
    attempts = 0
    while True:
        attempts += 1
        try:
            store.upload(local, partial)
            copied = int(store.info(partial).get("size") or 0)
            if copied != size:
                raise _Mismatch(f"{copied} bytes arrived, {size} sent")
            remote_checksum = store.checksum(partial)
            if remote_checksum != checksum:
                raise _Mismatch(f"adler32 {remote_checksum} on the server, {checksum} sent")
            store.rename(partial, url)
            return Published(url, size, checksum)
        except Exception as err:
            if not isinstance(err, _Mismatch) and not is_transient(err):
                raise TransferError(
                    f"cannot copy {local.name} to {url} on server {server_of(url)}: {short(err)}"
                ) from err
            pause = next(pauses, None)
            if pause is None:
                _discard(store, partial)
                raise TransferError(
                    f"cannot copy {local.name} to {url} on server {server_of(url)} "
                    f"after {attempts} attempts ({short(err)})"
                ) from err
            log.warning("copying %s to %s: %s; retrying in %.1f s", local, url, short(err), pause)
            store.reset()
            time.sleep(pause)


class _Mismatch(OSError):
    """The copy on the server differs from the local file."""


def _discard(store: Store, url: str) -> None:
    try:
        store.remove(url)
    except Exception as err:  # the server may be gone: the next run removes it
        log.debug("could not remove %s: %s", url, short(err))


class OutputDirectory(ABC):
    """Where finished output files go. Writers write into `staging`; `publish` finishes."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    @property
    @abstractmethod
    def staging(self) -> Path:
        """The local directory writers write into (files under their final names)."""

    @abstractmethod
    def location(self, name: str) -> str:
        """Path or URL of the file `name` in this directory."""

    @abstractmethod
    def probe(self) -> None:
        """ConfigError unless files can be created here (a cheap check at plan time)."""

    @abstractmethod
    def prepare(self, names: Collection[str]) -> int:
        """Creates the directory; removes what interrupted writes of the files `names` left
        (their number), and nothing else."""

    @abstractmethod
    def publish(self, written: Path) -> Published:
        """Makes a file written into `staging` final."""

    @abstractmethod
    def size(self, location: str) -> int | None:
        """Size of a published file, None if it is missing."""

    @abstractmethod
    def checksum(self, location: str) -> str:
        """adler32 of a published file."""

    @abstractmethod
    def listdir(self) -> list[str]:
        """Locations of the files in the directory (none if it does not exist)."""

    @abstractmethod
    def remove(self, location: str) -> None:
        """Deletes a published file."""

    def write_json(self, name: str, data: object, sort_keys: bool = True) -> str:
        """Writes a JSON file (as `files.write_json`) and publishes it; returns its location."""
        staged = self.staging / name
        write_json(staged, data, sort_keys=sort_keys)
        return self.publish(staged).path


class LocalOutputs(OutputDirectory):
    """A local directory: writers write in place, atomically."""

    @property
    def staging(self) -> Path:
        """The directory itself."""
        return Path(self.directory)

    def location(self, name: str) -> str:
        """The local path."""
        return str(Path(self.directory) / name)

    def probe(self) -> None:
        """Creates the directory and a probe file in it."""
        path = Path(self.directory)
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".balanced-batches-probe-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as err:
            raise ConfigError(
                f"output.directory = {self.directory!r}: not writable ({err.strerror or err})"
            ) from err

    def prepare(self, names: Collection[str]) -> int:
        """mkdir, and removal of interrupted atomic writes of `names`."""
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        return remove_temporaries(Path(self.directory), names)

    def publish(self, written: Path) -> Published:
        """Nothing to move: size and adler32 of the file."""
        return Published(str(written), written.stat().st_size, adler32_of(written))

    def size(self, location: str) -> int | None:
        """os.stat size."""
        path = Path(location)
        return path.stat().st_size if path.is_file() else None

    def checksum(self, location: str) -> str:
        """adler32 of the local file."""
        return adler32_of(Path(location))

    def listdir(self) -> list[str]:
        """Files in the directory."""
        path = Path(self.directory)
        return sorted(str(p) for p in path.iterdir() if p.is_file()) if path.is_dir() else []

    def remove(self, location: str) -> None:
        """unlink."""
        Path(location).unlink()


class RemoteOutputs(OutputDirectory):
    """A directory URL: files are staged locally, then copied with `copy_verified`."""

    def __init__(self, directory: str, staging: Path | None = None) -> None:
        super().__init__(directory)
        self._staging = staging

    @property
    def staging(self) -> Path:
        """The staging directory given, else a private temporary one."""
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="balanced-batches-staging-"))
        self._staging.mkdir(parents=True, exist_ok=True)
        return self._staging

    def location(self, name: str) -> str:
        """The file's URL."""
        return join(self.directory, name)

    def probe(self) -> None:
        """Creates the directory and writes and removes a small probe file."""
        try:
            self._call(self._write_probe, "write a probe file")
        except BalancedBatchesError as err:
            raise ConfigError(f"output.directory: {err}") from err
        except OSError as err:
            raise ConfigError(
                f"output.directory = {self.directory!r}: not writable on server "
                f"{server_of(self.directory)} ({short(err)})"
            ) from err

    def _write_probe(self) -> None:
        store = store_for(self.directory)
        store.makedirs(self.directory)
        probe = self.location(f".balanced-batches-probe-{os.getpid()}")
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(scratch) / "probe"
            local.write_bytes(b"probe\n")
            store.upload(local, probe)
        store.remove(probe)

    def prepare(self, names: Collection[str]) -> int:
        """makedirs, and removal of the `NAME.part-<token>` (and, of earlier versions,
        `NAME.part`) files that interrupted copies of `names` left."""
        store = store_for(self.directory)
        names = set(names)

        def copy_of(base: str) -> str | None:
            """NAME of a partial copy's file name, else None."""
            name, suffix, token = base.rpartition(TEMPORARY_SUFFIX)
            return name if suffix and (token == "" or token.startswith("-")) else None

        def clean() -> int:
            store.makedirs(self.directory)
            listed = store.listdir(self.directory)
            partial = [u for u in listed if copy_of(u.rsplit("/", 1)[-1]) in names]
            for url in partial:
                store.remove(url)
            return len(partial)

        return self._call(clean, "prepare the directory")

    def publish(self, written: Path) -> Published:
        """Verified copy to the directory; the staged file is deleted afterwards."""
        published = copy_verified(written, self.location(written.name))
        written.unlink()
        return published

    def size(self, location: str) -> int | None:
        """The server's size; None if the file is missing."""
        try:
            info = self._call(lambda: store_for(location).info(location), "stat", location)
        except FileNotFoundError:
            return None
        return int(info.get("size") or 0)

    def checksum(self, location: str) -> str:
        """The server's adler32."""
        return self._call(lambda: store_for(location).checksum(location), "checksum", location)

    def listdir(self) -> list[str]:
        """The server's listing."""
        try:
            return self._call(lambda: store_for(self.directory).listdir(self.directory), "list")
        except FileNotFoundError:
            return []

    def remove(self, location: str) -> None:
        """Deletes the file on the server."""
        self._call(lambda: store_for(location).remove(location), "remove", location)

    def _call(self, operation: Callable[[], T], what: str, location: str | None = None) -> T:
        return retrying(operation, location or self.directory, what, TransferError)


def output_directory(directory: str, staging: Path | None = None) -> OutputDirectory:
    """The output directory of a path or URL; remote files are staged in `staging`."""
    return RemoteOutputs(directory, staging) if is_url(directory) else LocalOutputs(directory)


def size_of(location: str) -> int | None:
    """Size of a published output file (path or URL), None if it is missing."""
    directory = location.rsplit("/", 1)[0]
    return output_directory(directory).size(location)
