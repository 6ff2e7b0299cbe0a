"""io._ttree_cascade: the entries of std::vector<T> baskets, against a plain per-entry loop.

The bytes of whole files are compared with ROOT's in test_ttree_writer.py; here the vectorised
framing meets a reference written entry by entry, for every element type a vector can hold
(1 to 8 bytes), empty entries and no entries at all.
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import example, given, settings
from hypothesis import strategies as st

from balanced_batches.io._ttree_cascade import vector_entries
from balanced_batches.io.ttree_writer import VECTOR_ELEMENTS

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
