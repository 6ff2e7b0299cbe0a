"""io._ttree_cascade: the entries of std::vector<T> baskets, against a plain per-entry loop, and
the baskets compressed on threads, against the same file compressed in the calling thread.

The bytes of whole files are compared with ROOT's in test_ttree_writer.py; here the vectorised
framing meets a reference written entry by entry, for every element type a vector can hold
(1 to 8 bytes), empty entries and no entries at all.
"""

from __future__ import annotations

import datetime
import itertools
import os
import struct
import types
import uuid
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import numpy.typing as npt
import pytest
import uproot
from hypothesis import example, given, settings
from hypothesis import strategies as st

from balanced_batches.io import _baskets
from balanced_batches.io._ttree_cascade import vector_entries
from balanced_batches.io.ttree_writer import VECTOR_ELEMENTS, BranchType, mktree

DTYPES = tuple(np.dtype(name).newbyteorder(">") for name in VECTOR_ELEMENTS)


def framed_one_by_one(
    offsets: npt.NDArray[np.int64], content: npt.NDArray[Any]
) -> tuple[bytes, list[int]]:
    """What TBufferFile writes for each entry: byte count | kByteCountMask, version 10, size,
    the elements; and where each entry starts (with the end)."""
    data, starts = bytearray(), [0]
    for start, stop in itertools.pairwise(offsets.tolist()):
        payload = content[start:stop].tobytes()
        data += struct.pack(">IHi", (len(payload) + 6) | 0x40000000, 10, stop - start) + payload
        starts.append(len(data))
    return bytes(data), starts


@st.composite
def vectors(draw: st.DrawFn) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Offsets (from 0) and big-endian content of a random vector branch."""
    dtype = draw(st.sampled_from(DTYPES))
    sizes = draw(st.lists(st.integers(0, 12) | st.just(0), max_size=40))
    offsets = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    nbytes = int(offsets[-1]) * dtype.itemsize
    raw = draw(st.binary(min_size=nbytes, max_size=nbytes))
    content = np.frombuffer(raw, np.uint8).copy()
    if dtype.kind == "b":  # a bool is one byte, 0 or 1
        content &= 1
    return offsets, content.view(dtype)


def vector(sizes: list[int], dtype: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Offsets and content 0, 1, 2, ... of entries of `sizes` elements."""
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    return offsets, (np.arange(offsets[-1]) % 2).astype(dtype)


@settings(max_examples=300, deadline=None)
@given(vectors())
@example(vector([], ">f4"))  # no entries
@example(vector([0, 0, 0], ">f8"))  # only empty entries
@example(vector([3, 0, 1, 0, 0, 2], "?"))  # 1-byte elements: entries start on any byte
@example(vector([1, 2, 0, 3], ">i8"))  # 8-byte elements: entries start 2 bytes apart mod 8
@example(vector([5, 1], ">u2"))
def test_vector_entries_are_the_entries_framed_one_by_one(
    branch: tuple[npt.NDArray[np.int64], npt.NDArray[Any]],
) -> None:
    offsets, content = branch
    buffer, starts = vector_entries(offsets, content)
    expected, expected_starts = framed_one_by_one(offsets, content)
    assert buffer.dtype == np.uint8
    assert buffer.tobytes() == expected
    assert starts.tolist() == expected_starts


STAMP = datetime.datetime(2000, 1, 1)
BRANCHES = [
    BranchType("n", "scalar", np.int32),
    BranchType("sv_mass", "counted", np.float32, counter="n"),
    BranchType("pf_pt", "vector", np.float32),
    BranchType("pf_valid", "vector", np.bool_),
    BranchType("pf_id", "vector", np.int64),
    BranchType("p4", "fixed", np.float32, shape=(4,)),
    BranchType("weight", "scalar", np.float64),
]
# An empty extend, then baskets of uneven sizes; the 7 branches are more than the baskets that
# wait for the threads (2 per thread), so that baskets are written while others are compressed.
CHUNKS = [0, 0, 30, 31, 400, 1000, 1500, 2000]


def random_rows(entries: int) -> dict[str, Any]:
    """Values for BRANCHES: arrays, or (offsets, content) of the jagged ones."""
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 4, entries)
    sizes = rng.integers(0, 40, entries)
    counted, vectors = (np.concatenate([[0], np.cumsum(s)]) for s in (counts, sizes))
    return {
        "n": counts.astype(np.int32),
        "sv_mass": (counted, rng.normal(size=counted[-1]).astype(np.float32)),
        "pf_pt": (vectors, rng.normal(size=vectors[-1]).astype(np.float32)),
        "pf_valid": (vectors, rng.integers(0, 2, vectors[-1]).astype(bool)),
        "pf_id": (vectors, rng.integers(-5, 5, vectors[-1])),
        "p4": rng.normal(size=(entries, 4)).astype(np.float32),
        "weight": rng.exponential(size=entries),
    }


def write_tree(path: Path, rows: dict[str, Any], threads: int, monkeypatch: Any) -> bytes:
    """The rows written in the extend calls of CHUNKS, compressed on `threads` threads (a pool
    made for this write), with uproot's clock and UUIDs fixed as writers fixes them."""
    with monkeypatch.context() as patch:
        patch.setattr(_baskets, "compression_threads", lambda: threads)
        patch.setattr(_baskets, "_pool", None)
        fixed = types.SimpleNamespace(datetime=types.SimpleNamespace(now=lambda tz=None: STAMP))
        for module in (
            uproot.writing._cascade,
            uproot.writing._cascadetree,
            uproot.writing.writable,
        ):
            patch.setattr(module, "datetime", fixed)
        with uproot.recreate(
            path, compression=uproot.ZSTD(5), uuid_function=lambda: uuid.UUID(int=1)
        ) as f:
            tree = mktree(f, "taus", BRANCHES)
            for start, stop in itertools.pairwise(CHUNKS):
                tree.extend(
                    {
                        name: (v[0][start : stop + 1], v[1])
                        if isinstance(v, tuple)
                        else v[start:stop]
                        for name, v in rows.items()
                    }
                )
        pool = _baskets._pool
        assert (pool is not None) == (threads > 1)  # threads were used, or not
        if pool is not None:
            pool.shutdown()
    return path.read_bytes()


@pytest.mark.parametrize("threads", [2, 3])
def test_threads_write_the_bytes_of_one_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    rows = random_rows(CHUNKS[-1])
    for directory in ("one", "many"):  # the same name: a ROOT file holds its own
        (tmp_path / directory).mkdir()
    one = write_tree(tmp_path / "one" / "taus.root", rows, 1, monkeypatch)
    many = write_tree(tmp_path / "many" / "taus.root", rows, threads, monkeypatch)
    assert many == one
    with uproot.open(tmp_path / "many" / "taus.root") as handle:
        tree = handle["taus"]
        assert tree.num_entries == CHUNKS[-1]
        assert tree["pf_pt"].num_baskets == len(CHUNKS) - 2  # none for the empty extend
        for name, values in rows.items():
            read = tree[name].array()
            if isinstance(values, tuple):
                assert ak.num(read).tolist() == np.diff(values[0]).tolist()
                assert ak.flatten(read).tolist() == values[1].tolist()
            else:
                assert read.tolist() == values.tolist()
        # every basket's key carries the fixed time (fDatime), as uproot's own keys do
        branch = tree["pf_pt"]
        for seek in branch.member("fBasketSeek")[: branch.num_baskets]:
            datime = uproot.reading._key_format_big.unpack_from(many, int(seek))[3]
            assert datime == uproot._util.datetime_to_code(STAMP)


def test_the_compression_pool_follows_the_threads_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process told another number of threads between writes (a library user setting
    OMP_NUM_THREADS) compresses on that many, not on the first pool's."""
    monkeypatch.setattr(_baskets, "_pool", None)  # restored after: other tests keep theirs
    monkeypatch.setattr(_baskets, "_pool_threads", 0)
    pools = [_baskets._compression_pool(threads) for threads in (3, 3, 2, 1)]
    try:
        assert pools[0] is not None and pools[1] is pools[0]
        assert pools[0]._max_workers == 3
        assert pools[2] is not None and pools[2] is not pools[0]
        assert pools[2]._max_workers == 2
        assert pools[2].submit(sum, (1, 2)).result() == 3
        assert pools[3] is None  # one thread: the calling thread compresses
    finally:
        for pool in pools:
            if pool is not None:
                pool.shutdown()


@pytest.mark.parametrize(
    ("told", "threads"),
    [("1", 1), ("2", 2), ("64", _baskets.MAX_COMPRESSION_THREADS), ("2,1", 2)]
    + [(junk, None) for junk in ("", "0", "-3", "abc", "²")],
)
def test_omp_num_threads_says_how_many_threads_compress(
    monkeypatch: pytest.MonkeyPatch, told: str, threads: int | None
) -> None:
    """Worker processes run one per core with OMP_NUM_THREADS=1: their writers compress in the
    calling thread, not on threads that would compete for the other workers' cores. A value
    that is no positive number counts as unset: the cores this process may use."""
    cores = min(len(os.sched_getaffinity(0)), _baskets.MAX_COMPRESSION_THREADS)
    monkeypatch.setenv("OMP_NUM_THREADS", told)
    assert _baskets.compression_threads() == (cores if threads is None else threads)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert _baskets.compression_threads() == cores
