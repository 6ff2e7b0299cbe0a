"""TBaskets of a TTree written through uproot's cascading writer, compressed on threads.

uproot's ``write_np_basket`` and ``write_jagged_basket`` build a basket's payload, compress it and
place it, one branch after the other. Here the same three steps are apart, so that the payloads of
one extend are compressed concurrently (zstd, zlib and lz4 release the GIL) while the baskets are
still placed in branch order: the file's bytes are those uproot writes (uproot 5.7,
``uproot/writing/_cascadetree.py``; ROOT's TKey and TBasket, ``io/doc/TFile/ttree.md``).

How many threads: the ``OMP_NUM_THREADS`` of the process when set, the convention by which Dask's
and our own worker processes (one per core, 1) and HTCondor jobs (the slot's cores) are told how
many threads they may run; else the cores the process may run on; at most
`MAX_COMPRESSION_THREADS`. A value the user set before starting `run` wins in its workers
too (`engines.worker_server`): `OMP_NUM_THREADS` = the cores, with a worker per core, would
have every worker compress on several threads. Two writers on a 2-core machine that each
compressed on 2 threads were 5-7 % slower than with one thread each (BENCHMARKS.md).
"""

from __future__ import annotations

import math
import os
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import uproot
import uproot.writing._cascadetree as cascadetree

MAX_COMPRESSION_THREADS = 4
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0  # the process that made _pool: a forked child inherits the object, not its threads
_pool_threads = 0  # how many threads _pool has


class Basket(NamedTuple):
    """What the key and TBasket header of one basket say about its uncompressed payload."""

    tree: str  # the tree's name: the key's title
    branch: str  # the key's name
    key_length: int  # fKeylen
    objlen: int  # fObjlen: the payload's bytes
    nevbufsize: int  # fNevBufSize: a flat branch's bytes per entry; entries + 2 if jagged
    nevbuf: int  # fNevBuf: the entries
    last: int  # fLast: where the entries end (the offsets begin), from the key's start


def basket(
    tree: str, branch: str, values: np.ndarray, offsets: npt.NDArray[np.int64] | None
) -> tuple[Basket, bytes]:
    """A branch's basket and its uncompressed payload, as ``write_np_basket`` (`offsets` None)
    or ``write_jagged_basket`` builds them: the values, then for a jagged branch the number of
    entry offsets (u32) and the offsets (i32, in bytes from the key's start)."""
    string = uproot.serialization.string
    key_length = (
        uproot.reading._key_format_big.size
        + len(string("TBasket"))
        + len(string(branch))
        + len(string(tree))
        + uproot.models.TBasket._tbasket_format2.size
        + 1  # the byte after the TBasket header, part of the key
    )
    itemsize = values.dtype.itemsize * math.prod(values.shape[1:])
    if offsets is None:
        payload = values.tobytes()
        last = key_length + len(payload)
        return Basket(tree, branch, key_length, len(payload), itemsize, len(values), last), payload
    _check_basket_size(branch, values.nbytes + 4 * len(offsets))
    positions = (offsets * itemsize + key_length).astype(">i4")
    count = struct.pack(">I", len(positions))
    payload = b"".join((np.ascontiguousarray(values).data, count, positions.data))
    # uproot then zeroes the last offset of its array, after it was copied into the payload
    entries = len(positions) - 1
    made = Basket(tree, branch, key_length, len(payload), entries + 2, entries, int(positions[-1]))
    return made, payload


def _check_basket_size(name: str, size: int) -> None:
    """Refuses a basket whose entry offsets (32-bit, from the key's start) would overflow."""
    if size >= uproot.const.kMaxTBasketBytes - 65536:
        raise ValueError(
            f"branch {name!r}: {size} bytes in one basket, more than a TBasket holds (2 GiB); "
            "extend with fewer entries at a time"
        )


def write_basket(
    sink: Any, freesegments: Any, directory_location: int, basket: Basket, data: bytes
) -> tuple[int, int, int]:
    """Places the compressed `data` of `basket` in the file behind `sink`, as uproot's basket
    writers do: the TKey, the TBasket v3 header, the data. Returns where it starts, and its
    uncompressed and compressed bytes (with the key)."""
    nbytes = basket.key_length + len(data)
    if max(basket.objlen, nbytes) > uproot.const.kMaxTBasketBytes:
        raise ValueError(
            f"branch {basket.branch!r}: {basket.objlen} bytes in one basket ({nbytes} "
            "compressed), more than a TBasket holds (2 GiB); extend with fewer entries at a time"
        )
    location = freesegments.allocate(nbytes, dry_run=False)
    # the clock through uproot's module, so that writers._reproducible_root_file fixes it
    now = cascadetree.datetime.datetime.now()
    key = uproot.reading._key_format_big.pack(
        nbytes,
        1004,  # fVersion
        basket.objlen,
        uproot._util.datetime_to_code(now),  # fDatime
        basket.key_length,
        0,  # fCycle
        location,  # fSeekKey
        directory_location,  # fSeekPdir, as uproot
    )
    string = uproot.serialization.string
    header = uproot.models.TBasket._tbasket_format2.pack(
        3,  # fVersion
        32000,  # fBufferSize
        basket.nevbufsize,
        basket.nevbuf,
        basket.last,
    )
    names = string("TBasket") + string(basket.branch) + string(basket.tree)
    sink.write(location, b"".join((key, names, header, b"\x00", data)))
    freesegments.write(sink)
    sink.set_file_length(freesegments.fileheader.end)
    sink.flush()
    return location, basket.key_length + basket.objlen, nbytes


class Compressor:
    """Compresses payloads on this process's threads, or in the calling thread when it may run
    one thread only. `window`: how many compressed baskets may wait to be written, two per
    thread, so that building, compressing and writing overlap with few payloads in memory."""

    def __init__(self) -> None:
        threads = compression_threads()
        self._pool = _compression_pool(threads)
        self.window = 0 if self._pool is None else 2 * threads

    def compress(self, payload: bytes, compression: Any) -> Future[bytes] | bytes:
        """The compressed payload, or its future."""
        if self._pool is None:
            return uproot.compression.compress(payload, compression)  # type: ignore[no-any-return]
        return self._pool.submit(uproot.compression.compress, payload, compression)


def compression_threads() -> int:
    """Threads that compress baskets: OMP_NUM_THREADS if set (its first level, `4,2` -> 4),
    else the cores this process may run on, at most `MAX_COMPRESSION_THREADS`. A value that
    is not a positive number counts as unset."""
    try:
        threads = int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        threads = 0
    if threads < 1:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            threads = os.cpu_count() or 1
    return min(threads, MAX_COMPRESSION_THREADS)


def _compression_pool(threads: int) -> ThreadPoolExecutor | None:
    """This process's `threads` compression threads, started on first use and again when the
    number asked for changes (`OMP_NUM_THREADS` set anew between writes); None for one thread
    (the calling thread compresses)."""
    global _pool, _pool_pid, _pool_threads
    if threads < 2:
        return None
    if _pool is None or _pool_pid != os.getpid() or _pool_threads != threads:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.shutdown(wait=False)  # its last baskets still finish: writers wait on them
        _pool = ThreadPoolExecutor(threads, thread_name_prefix="basket-compression")
        _pool_pid, _pool_threads = os.getpid(), threads
    return _pool
