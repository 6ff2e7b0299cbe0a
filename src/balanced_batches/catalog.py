"""The SQLite catalog of a working directory: files, counts, plan and job states.

Every stage of the pipeline finds what earlier stages did here, so reruns are
incremental and resumable. Writes happen in transactions under WAL journaling;
only the client process (never a worker) writes.
"""

from __future__ import annotations

import datetime
import fcntl
import io
import json
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import CatalogError

log = logging.getLogger(__name__)
CATALOG_NAME = "balanced-batches.sqlite"
LOCK_NAME = "balanced-batches.lock"
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT UNIQUE NOT NULL,
    name TEXT NOT NULL,
    list_index INTEGER NOT NULL,
    process TEXT,
    pileup TEXT,
    size INTEGER,
    mtime REAL,
    entries INTEGER,
    bytes_per_entry REAL,
    selection_hash TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    error TEXT
);
CREATE TABLE IF NOT EXISTS counts (
    file_id INTEGER NOT NULL,
    region INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (file_id, region)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS arrays (name TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS units (
    kind TEXT NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    result TEXT,
    started TEXT,
    PRIMARY KEY (kind, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS written (
    location TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    size INTEGER
) WITHOUT ROWID;
"""
# what schema 1 lacked: the start of running units and the files this tool wrote
_MIGRATIONS = {1: ("ALTER TABLE units ADD COLUMN started TEXT",)}


@dataclass(frozen=True)
class FileRecord:
    """A row of the `files` table."""

    id: int
    path: str
    name: str
    list_index: int
    process: str | None
    pileup: str | None
    size: int | None
    mtime: float | None
    entries: int | None
    bytes_per_entry: float | None
    selection_hash: str | None
    status: str
    error: str | None


class UnitRow(NamedTuple):
    """A row of the `units` table."""

    kind: str
    unit: int
    status: str
    attempts: int
    error: str | None
    started: str | None  # when it was last handed to a worker (ISO, UTC)


@contextmanager
def catalog_errors(path: Path) -> Iterator[None]:
    """Turns what SQLite reports about the catalog's file (disk full, read-only, not a
    database) into one-line CatalogErrors naming it."""
    try:
        yield
    except sqlite3.DatabaseError as err:
        raise CatalogError(f"{path}: {err}") from err


def _prefix_match(prefix: str) -> tuple[int, str]:
    # compared literally: LIKE would treat "_" and "%" as wildcards and ignore case
    return len(prefix) + 1, prefix + "."


class Catalog:
    """Narrow, typed access to the catalog file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with catalog_errors(path):
            self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._stored_version()
            if version is not None and version > SCHEMA_VERSION:
                raise CatalogError(
                    f"{path}: catalog schema {version}, made by a newer balanced-batches "
                    f"(this one reads schema {SCHEMA_VERSION} and older)"
                )
            if version == SCHEMA_VERSION:
                return  # opening changes nothing: commands that fail leave it as it was
            self._db.executescript(_SCHEMA)
            if version is not None:
                self._migrate(version)
            self.set_meta("schema_version", SCHEMA_VERSION)

    def _stored_version(self) -> int | None:
        exists = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if exists is None:
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return None if row is None else int(json.loads(row[0]))

    def _migrate(self, version: int) -> None:
        """Brings an older catalog up to date; the outputs its finished write units recorded
        are taken into `written`, since this tool wrote them."""
        with self.transaction() as db:
            for old in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS.get(old, ()):
                    db.execute(statement)
            for result in self.unit_results("write").values():
                for output in result.get("outputs", ()):
                    db.execute(
                        "INSERT OR REPLACE INTO written (location, kind, size) VALUES (?, ?, ?)",
                        (output["path"], "output", output.get("size")),
                    )

    @classmethod
    def open(cls, workdir: Path, create: bool = False) -> Catalog:
        """Opens the catalog of a working directory; without `create` it must exist."""
        path = workdir / CATALOG_NAME
        if not path.exists():
            if not create:
                raise CatalogError(
                    f"{workdir}: no catalog ({CATALOG_NAME}); run 'balanced-batches count' first"
                )
            workdir.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def close(self) -> None:
        """Closes the connection."""
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all."""
        with catalog_errors(self.path):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite ends it itself on some errors (disk full)
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- meta ---------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        """A JSON value stored under `key`, or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        """Stores a JSON value under `key`."""
        with catalog_errors(self.path):
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    def delete_meta(self, key: str) -> None:
        """Removes `key`."""
        with catalog_errors(self.path):
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))

    # -- files and counts ---------------------------------------------------
    def files(self) -> list[FileRecord]:
        """All files, in list order."""
        rows = self._db.execute(
            f"SELECT {', '.join(FileRecord.__dataclass_fields__)} FROM files ORDER BY list_index"
        ).fetchall()
        return [FileRecord(*row) for row in rows]

    def sync_file_list(self, entries: Sequence[tuple[str, str, str | None, str | None]]) -> int:
        """Makes the file table follow the list: (path, name, process, pileup) in order.

        Files no longer listed are removed with their counts (their number is returned);
        new files start as pending.
        """
        with self.transaction() as db:
            known = {path: file_id for file_id, path in db.execute("SELECT id, path FROM files")}
            listed = {entry[0] for entry in entries}
            removed = 0
            for path, file_id in known.items():
                if path not in listed:
                    removed += 1
                    db.execute("DELETE FROM counts WHERE file_id = ?", (file_id,))
                    db.execute("DELETE FROM files WHERE id = ?", (file_id,))
            for index, (path, name, process, pileup) in enumerate(entries):
                if path in known:
                    db.execute(
                        "UPDATE files SET name=?, list_index=?, process=?, pileup=? WHERE path=?",
                        (name, index, process, pileup, path),
                    )
                else:
                    db.execute(
                        "INSERT INTO files (path, name, list_index, process, pileup)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (path, name, index, process, pileup),
                    )
        return removed

    def record_count(
        self,
        file_id: int,
        *,
        size: int,
        mtime: float,
        entries: int,
        bytes_per_entry: float,
        selection_hash: str,
        counts: np.ndarray,
    ) -> None:
        """Stores a counted file and its non-zero region counts."""
        nonzero = np.flatnonzero(counts)
        with self.transaction() as db:
            db.execute("DELETE FROM counts WHERE file_id = ?", (file_id,))
            db.executemany(
                "INSERT INTO counts (file_id, region, n) VALUES (?, ?, ?)",
                [(file_id, int(region), int(counts[region])) for region in nonzero],
            )
            db.execute(
                "UPDATE files SET size=?, mtime=?, entries=?, bytes_per_entry=?,"
                " selection_hash=?, status='counted', error=NULL WHERE id=?",
                (size, mtime, entries, bytes_per_entry, selection_hash, file_id),
            )

    def record_bad_file(self, file_id: int, error: str) -> None:
        """Marks a file as unreadable, with the reason."""
        with self.transaction() as db:
            db.execute("DELETE FROM counts WHERE file_id = ?", (file_id,))
            db.execute("UPDATE files SET status='bad', error=? WHERE id=?", (error, file_id))

    def counts_matrix(self, n_regions: int) -> tuple[np.ndarray, np.ndarray]:
        """(file ids in list order, counts[file, region]) for counted files."""
        rows = self._db.execute(
            "SELECT id FROM files WHERE status='counted' ORDER BY list_index"
        ).fetchall()
        file_ids = np.array([row[0] for row in rows], dtype=np.int64)
        matrix = np.zeros((len(file_ids), n_regions), dtype=np.int64)
        position = {int(file_id): index for index, file_id in enumerate(file_ids)}
        for file_id, region, n in self._db.execute(
            "SELECT c.file_id, c.region, c.n FROM counts c JOIN files f ON f.id = c.file_id"
            " WHERE f.status='counted'"
        ):
            matrix[position[file_id], region] = n
        return file_ids, matrix

    # -- arrays (the plan) --------------------------------------------------
    def put_arrays(self, prefix: str, arrays: dict[str, np.ndarray]) -> None:
        """Stores numpy arrays under `prefix.name`, replacing every array of that prefix."""
        with self.transaction() as db:
            db.execute("DELETE FROM arrays WHERE substr(name, 1, ?) = ?", _prefix_match(prefix))
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.save(buffer, np.asarray(array), allow_pickle=False)
                db.execute(
                    "INSERT INTO arrays (name, data) VALUES (?, ?)",
                    (f"{prefix}.{name}", buffer.getvalue()),
                )

    def get_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Arrays stored under a prefix, by short name."""
        result = {}
        for name, data in self._db.execute(
            "SELECT name, data FROM arrays WHERE substr(name, 1, ?) = ?", _prefix_match(prefix)
        ):
            result[name[len(prefix) + 1 :]] = np.load(io.BytesIO(data), allow_pickle=False)
        return result

    # -- work units ---------------------------------------------------------
    def reset_units(self, kinds: dict[str, int]) -> None:
        """Starts the unit table afresh: `kinds` maps a kind to its number of units."""
        with self.transaction() as db:
            db.execute("DELETE FROM units")
            db.executemany(
                "INSERT INTO units (kind, idx, status) VALUES (?, ?, 'pending')",
                [(kind, index) for kind, count in kinds.items() for index in range(count)],
            )

    def unit_states(self, kind: str) -> dict[int, str]:
        """Status of every unit of a kind."""
        rows = self._db.execute("SELECT idx, status FROM units WHERE kind = ?", (kind,))
        return {index: status for index, status in rows}

    def unit_rows(self) -> list[UnitRow]:
        """Every unit, by kind and index."""
        return [
            UnitRow(*row)
            for row in self._db.execute(
                "SELECT kind, idx, status, attempts, error, started FROM units ORDER BY kind, idx"
            )
        ]

    def set_unit(
        self, kind: str, index: int, status: str, error: str | None = None, result: Any = None
    ) -> None:
        """Records a unit's new state; a failure counts as one more attempt."""
        with self.transaction() as db:
            db.execute(
                "UPDATE units SET status=?, error=?, result=?,"
                " attempts = attempts + (CASE WHEN ? = 'failed' THEN 1 ELSE 0 END)"
                " WHERE kind=? AND idx=?",
                (
                    status,
                    error,
                    None if result is None else json.dumps(result),
                    status,
                    kind,
                    index,
                ),
            )

    def mark_running(self, kind: str, indices: Sequence[int]) -> None:
        """Marks units as handed to workers, with the time (one transaction); a crash leaves
        them `running`, which later runs treat like `pending` and `status` shows as
        interrupted."""
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        with self.transaction() as db:
            db.executemany(
                "UPDATE units SET status='running', started=? WHERE kind=? AND idx=?",
                [(started, kind, index) for index in indices],
            )

    # -- files this tool wrote ------------------------------------------------
    def record_written(self, kind: str, files: Sequence[tuple[str, int | None]]) -> None:
        """Remembers files this tool wrote, (location, size): only those may it later
        replace or delete."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO written (location, kind, size) VALUES (?, ?, ?)",
                [(location, kind, size) for location, size in files],
            )

    def written(self, kind: str) -> dict[str, int | None]:
        """Locations (with sizes) of the files of a kind this tool wrote and has not deleted."""
        rows = self._db.execute("SELECT location, size FROM written WHERE kind = ?", (kind,))
        return {location: size for location, size in rows}

    def forget_written(self, locations: Sequence[str]) -> None:
        """Forgets files this tool deleted."""
        with self.transaction() as db:
            db.executemany("DELETE FROM written WHERE location = ?", [(x,) for x in locations])

    def unit_results(self, kind: str) -> dict[int, Any]:
        """Result records of the finished units of a kind."""
        rows = self._db.execute(
            "SELECT idx, result FROM units WHERE kind = ? AND status = 'done'", (kind,)
        )
        return {index: json.loads(result) for index, result in rows if result is not None}


JOBS_NOTE = "balanced-batches make --job (one or more jobs)"


@contextmanager
def workdir_lock(workdir: Path, *, shared: bool = False) -> Iterator[None]:
    """Holds the working directory for one command; a second one refuses to start.

    `shared`: for `make --job`, several of which may run at once; they still keep out
    the commands that take the directory alone (count, plan, run), and those keep them out.
    The lock file names the holder, for the message of a command that is refused.
    """
    path = workdir / LOCK_NAME
    # jobs write the same note at the same place, so jobs starting together cannot mix it
    note = (JOBS_NOTE if shared else f"balanced-batches pid {os.getpid()}").encode()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise CatalogError(f"cannot lock {path}: {err.strerror or err}") from None
    try:
        locked = _lock(descriptor, path, shared)
        if locked:
            _write_note(descriptor, path, note)
        try:
            yield
        finally:
            if locked:
                if not shared or _last_holder(descriptor):
                    os.ftruncate(descriptor, 0)
                fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _write_note(descriptor: int, path: Path, note: bytes) -> None:
    """Names the holder in the lock file; a full disk leaves the lock taken, unnamed."""
    try:
        os.pwrite(descriptor, note, 0)
        os.ftruncate(descriptor, len(note))
    except OSError as err:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        raise CatalogError(f"cannot lock {path}: {err.strerror or err}") from None


def lock_holder(workdir: Path) -> str | None:
    """Who holds the working directory now (as its lock file names them), or None."""
    path = workdir / LOCK_NAME
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(descriptor, 4096, 0).decode(errors="replace").strip() or "a process"
        except OSError:
            return None  # no locks on this file system: nobody can be told apart
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return None
    finally:
        os.close(descriptor)


def _lock(descriptor: int, path: Path, shared: bool) -> bool:
    """Takes the lock, or refuses naming its holder; False where the file system has no
    locks (some network mounts): jobs then run without it, other commands refuse."""
    try:
        fcntl.flock(descriptor, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(descriptor, 4096, 0).decode(errors="replace").strip()
        raise CatalogError(
            f"{path.parent} is in use by {other or 'another process'}; "
            "wait for it to finish (or stop it) and retry"
        ) from None
    except OSError as err:
        if not shared:
            raise CatalogError(f"cannot lock {path}: {err.strerror or err}") from None
        log.warning("cannot lock %s (%s): running without the lock", path, err.strerror)
        return False
    return True


def _last_holder(descriptor: int) -> bool:
    """Whether no other job holds the lock (the shared lock may be lost on the way: it is
    being released anyway)."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True
