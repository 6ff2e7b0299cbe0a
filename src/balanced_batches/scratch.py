"""A plan's scratch directory: where read units leave intermediate parts for the write units,
and write units their partial statistics. Local (the default) or remote
(`execution.scratch: root://host//dir`), for batch jobs that share no file system.

Everything the units do with the scratch directory goes through `scratch_at(location)`:
- `writing_parts(read_unit)`: a local directory to write a read unit's parts into
  (`shards.write_part`); a remote scratch packs and uploads them when the unit is done
  (`remote_parts`);
- `open_parts()`: every finished part, to read from (`shards.Part` or `remote_parts.RemotePart`);
- `complete_parts()`: how many finished parts each read unit has;
- `put_json` / `get_json` / `names`: small write-once records (partial statistics, and the
  result records of batch jobs, which `records_at` keeps in a directory of their own);
- `staging()`: a local directory for outputs on their way to a remote output directory;
- `remove()`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .errors import BalancedBatchesError
from .io.files import adler32_of, atomic_path, is_url
from .io.outputs import copy_verified
from .io.stores import TransferError, is_missing, join, retrying, store_for
from .remote_parts import is_pack, open_pack, pack_name, pack_parts, parts_in_name
from .shards import (
    SCRATCH_PREFIX,
    Part,
    all_parts,
    complete_parts,
    parts_of_read_unit,
    remove_part_temporaries,
    remove_parts_of_read_unit,
    remove_scratch,
)

T = TypeVar("T")
INTERMEDIATE = ("parts", "statistics")  # what write units read; records stay
REMOTE_SCRATCH = ("root://", "davs://", "dav://", "https://", "http://")


class Scratch(ABC):
    """A plan's scratch directory (see the module's description)."""

    def __init__(self, location: str) -> None:
        self.location = location

    @abstractmethod
    def writing_parts(self, read_unit: int) -> contextlib.AbstractContextManager[Path]:
        """A local directory to write the parts of `read_unit` into (`shards.part_path`);
        earlier attempts' parts are gone, and the parts are final when the block ends."""

    @abstractmethod
    def open_parts(self) -> list[Any]:
        """Every finished part, in read-unit order (close each when done)."""

    @abstractmethod
    def complete_parts(self) -> Counter[int]:
        """How many finished parts each read unit has."""

    @abstractmethod
    def put_json(self, name: str, data: object) -> None:
        """Writes a small record (replacing an earlier attempt's)."""

    @abstractmethod
    def get_json(self, name: str) -> Any | None:
        """A record, None if it is not there."""

    @abstractmethod
    def remove_json(self, name: str) -> None:
        """Deletes a record, if it is there."""

    @abstractmethod
    def names(self, directory: str) -> list[str]:
        """Names of the files in a subdirectory (none if it does not exist)."""

    @abstractmethod
    def staging(self) -> Path:
        """A local directory for files on their way elsewhere."""

    @abstractmethod
    def clean_temporaries(self) -> None:
        """Removes what interrupted writes left."""

    @abstractmethod
    def remove(self, remove_empty_root: bool = False) -> None:
        """Deletes the directory and everything in it."""

    @abstractmethod
    def remove_intermediate(self) -> None:
        """Deletes the parts and partial statistics (not the result records)."""


class LocalScratch(Scratch):
    """A directory of this machine (or of a shared file system)."""

    @property
    def path(self) -> Path:
        """The directory."""
        return Path(self.location)

    @contextlib.contextmanager
    def writing_parts(self, read_unit: int) -> Iterator[Path]:
        """The scratch directory itself: parts are written in place, atomically."""
        remove_parts_of_read_unit(self.path, read_unit)
        yield self.path

    def open_parts(self) -> list[Any]:
        """`shards.Part` of every finished part file."""
        return [Part(path) for path in all_parts(self.path)]

    def complete_parts(self) -> Counter[int]:
        """Complete part files per read unit."""
        return complete_parts(self.path)

    def put_json(self, name: str, data: object) -> None:
        """Compact JSON, written atomically (not flushed: made again on a rerun)."""
        with atomic_path(self.path / name, durable=False) as temporary:
            temporary.write_text(json.dumps(data, separators=(",", ":")))

    def get_json(self, name: str) -> Any | None:
        """The record's data."""
        path = self.path / name
        return json.loads(path.read_text()) if path.is_file() else None

    def remove_json(self, name: str) -> None:
        """unlink."""
        (self.path / name).unlink(missing_ok=True)

    def names(self, directory: str) -> list[str]:
        """Files of the subdirectory."""
        path = self.path / directory
        return sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []

    def staging(self) -> Path:
        """`<scratch>/staging`."""
        return self.path / "staging"

    def clean_temporaries(self) -> None:
        """Partial part files of interrupted read units."""
        remove_part_temporaries(self.path)

    def remove(self, remove_empty_root: bool = False) -> None:
        """`shards.remove_scratch`."""
        remove_scratch(self.path, remove_empty_root)

    def remove_intermediate(self) -> None:
        """The `parts` and `statistics` subdirectories."""
        for name in INTERMEDIATE:
            shutil.rmtree(self.path / name, ignore_errors=True)


class RemoteScratch(Scratch):
    """A directory on a server (root://, davs://): parts travel as one verified pack per read
    unit."""

    def _url(self, *names: str) -> str:
        url = self.location
        for name in names:
            url = join(url, name)
        return url

    @contextlib.contextmanager
    def writing_parts(self, read_unit: int) -> Iterator[Path]:
        """A local temporary directory; its parts are packed and uploaded at the end."""
        local = Path(tempfile.mkdtemp(prefix="balanced-batches-parts-"))
        try:
            yield local
            parts = parts_of_read_unit(local, read_unit)
            pack = local / pack_name(read_unit, len(parts))
            pack_parts(parts, pack)
            self._publish_pack(read_unit, pack)
        finally:
            shutil.rmtree(local, ignore_errors=True)

    def _publish_pack(self, read_unit: int, pack: Path) -> None:
        target = self._url("parts", pack.name)
        for url in self._packs():
            unit, _ = parts_in_name(url.rsplit("/", 1)[-1])
            if unit == read_unit and url != target:  # an earlier attempt's
                _unless_missing(functools.partial(store_for(url).remove, url), url, "remove")
        self._upload(pack, "parts", pack.name)

    def _upload(self, local: Path, *names: str) -> None:
        """`write_once` of a local file to `<scratch>/<names...>`, its directory made first."""
        target = self._url(*names)
        parent = target.rsplit("/", 1)[0]
        store = store_for(target)
        _retry(lambda: store.makedirs(parent), parent, "create the directory")
        write_once(local, target)

    def _packs(self) -> list[str]:
        return [self._url("parts", name) for name in self.names("parts") if is_pack(name)]

    def open_parts(self) -> list[Any]:
        """The parts of every pack, read by byte ranges."""
        return [part for url in self._packs() for part in open_pack(url)]

    def complete_parts(self) -> Counter[int]:
        """Parts per read unit, from the packs' names (a pack is only ever renamed into
        place once verified)."""
        counts: Counter[int] = Counter()
        for url in self._packs():
            unit, parts = parts_in_name(url.rsplit("/", 1)[-1])
            counts[unit] = parts
        return counts

    def put_json(self, name: str, data: object) -> None:
        """Uploaded through a verified copy."""
        with tempfile.TemporaryDirectory(prefix="balanced-batches-") as local:
            path = Path(local) / name.rsplit("/", 1)[-1]
            path.write_text(json.dumps(data, separators=(",", ":")))
            self._upload(path, *name.split("/"))

    def get_json(self, name: str) -> Any | None:
        """Read from the server."""
        url = self._url(*name.split("/"))
        data = _unless_missing(lambda: store_for(url).read(url), url, "read")
        return None if data is None else json.loads(data)

    def remove_json(self, name: str) -> None:
        """Deleted on the server."""
        url = self._url(*name.split("/"))
        _unless_missing(lambda: store_for(url).remove(url), url, "remove")

    def names(self, directory: str) -> list[str]:
        """Files of the subdirectory on the server."""
        url = self._url(*directory.split("/"))
        listed = _unless_missing(lambda: store_for(url).listdir(url), url, "list") or []
        return sorted(u.rsplit("/", 1)[-1] for u in listed)

    def staging(self) -> Path:
        """A local directory of this process's machine."""
        name = self.location.rstrip("/").rsplit("/", 1)[-1]
        return Path(tempfile.gettempdir()) / f"balanced-batches-staging-{name}"

    def clean_temporaries(self) -> None:
        """Nothing: an interrupted copy leaves a `.part` name that no reader takes."""

    def remove(self, remove_empty_root: bool = False) -> None:
        """Deletes the plan's directory on the server (only a directory this tool names)."""
        del remove_empty_root  # a remote root is the user's
        shutil.rmtree(self.staging(), ignore_errors=True)
        if self.location.rstrip("/").rsplit("/", 1)[-1].startswith(SCRATCH_PREFIX):
            self._remove_tree(self.location)

    def remove_intermediate(self) -> None:
        """The `parts` and `statistics` subdirectories on the server."""
        for name in INTERMEDIATE:
            self._remove_tree(self._url(name))

    def _remove_tree(self, url: str) -> None:
        _unless_missing(lambda: store_for(url).remove_tree(url), url, "remove")


def _retry(operation: Callable[[], T], location: str, what: str) -> T:
    return retrying(operation, location, what, TransferError)


def _unless_missing(operation: Callable[[], T], location: str, what: str) -> T | None:
    """`operation()` (retried), or None where the file or directory is not there."""
    try:
        return _retry(operation, location, what)
    except OSError as err:
        if is_missing(err):
            return None
        raise


def write_once(local: Path, url: str) -> None:
    """Copies a local file to `url`, verified (`copy_verified`), never over another file: a
    file already there with the same size and adler32 counts as done; one that differs (an
    earlier attempt's) is deleted first."""
    store = store_for(url)
    info = _unless_missing(lambda: store.info(url), url, "stat")
    if info is not None:
        same_size = int(info.get("size") or 0) == local.stat().st_size
        if same_size and _retry(lambda: store.checksum(url), url, "checksum") == adler32_of(local):
            return
        _retry(lambda: store.remove(url), url, "remove")
    copy_verified(local, url)


def records_at(location: str) -> Scratch:
    """Where batch jobs leave their result records: a directory (or root:// URL) holding
    write-once `job-<number>.json` files."""
    return scratch_at(location)


def scratch_at(location: str) -> Scratch:
    """The scratch directory at a path or URL."""
    if not is_url(location):
        return LocalScratch(location)
    if not location.startswith(REMOTE_SCRATCH):
        raise BalancedBatchesError(
            f"execution.scratch = {location!r}: remote scratch directories are root:// "
            "(XRootD) or davs:// / https:// (WebDAV) URLs; or a local path"
        )
    return RemoteScratch(location)
