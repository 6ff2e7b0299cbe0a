"""The bytes of a TTree with ``std::vector<T>`` branches, written through uproot's cascading writer.

`CascadeTree` is an ``uproot.writing._cascadetree.Tree`` (uproot 5.7) that serialises its branches
itself (`CascadeTree._build_out`) and fills them with `CascadeTree.write_entries`; everything else
is uproot's: the TKey of the tree, its in-place updates after each basket (``write_updates``), its
relocation when the basket arrays fill up (``_relocate``), the free-segment allocation, the TBasket
keys and their compression.

Scalar, fixed-size and counted-array branches are a TBranch v13 with one TLeaf[OBSILFD] v1, byte for
byte as uproot writes them. A ``std::vector<T>`` branch is what ROOT 6.40 writes for
``tree.Branch(name, &vector)`` (checked member by member against a ROOT-written file):

- TBranchElement v10: its TBranch v13 base (title = name, fSplitLevel 99, one leaf), then
  fClassName ``vector<float>``, fParentName ``""``, fClonesName ``""``, fCheckSum
  (`class_checksum`), fClassVersion 6, fID -1, fType 0, fStreamerType -1, fMaximum 0,
  fBranchCount = fBranchCount2 = null (ROOT's TBranchElement::Streamer; go-hep groot
  ``rtree/branch.go``, tbranchElement);
- its leaf a TLeafElement v1: TLeaf v2 (fLen 1, fLenType 0, fOffset 0, fIsRange and fIsUnsigned
  false, fLeafCount null), then fID -1, fType -1;
- each entry as TBufferFile streams a collection (`vector_entries`), and each TBasket ending with
  the entry offsets (fEntryOffset, relative to the start of the basket's key), as uproot's jagged
  baskets already do. See ROOT's io/doc/TFile/ttree.md and tree/tree/src/TBasket.cxx.

The baskets of one `CascadeTree.write_entries` call are compressed on a few threads and written
in branch order (`_baskets`), as uproot's ``write_jagged_basket`` and ``write_np_basket`` would
write them one after the other: the same bytes at the same places.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import uproot
import uproot.writing._cascadetree as cascadetree

from . import _baskets

if TYPE_CHECKING:
    from balanced_batches.io.ttree_writer import BranchType

# The version TBufferFile writes before each std::vector<T> entry (ROOT 6.40; files of older ROOT
# releases carry 9 and are read alike).
VECTOR_VERSION = 10
# TBranchElement::fClassVersion of every std::vector<T> branch ROOT 6.40 writes.
VECTOR_CLASS_VERSION = 6
BYTE_COUNT_MASK = 0x40000000  # kByteCountMask: marks the first word of a framed object
# One entry's header: its byte count | kByteCountMask (counting what follows that word), the
# version, the number of elements. Packed, as on disk.
ENTRY_HEADER = np.dtype([("bytecount", ">u4"), ("version", ">u2"), ("size", ">i4")])
ENTRY_HEADER_BYTES = 10
assert ENTRY_HEADER.itemsize == ENTRY_HEADER_BYTES
_HEADER_BYTES = np.dtype((np.void, ENTRY_HEADER_BYTES))  # one header as opaque bytes

_NEW_CLASS_TAG = 0xFFFFFFFF  # kNewClassTag: a class name follows
_MAP_OFFSET = 2  # kMapOffset: object references count from the key's start plus 2
_TNAMED_BITS = 0x03000000  # kIsOnHeap | kNotDeleted, as uproot's TNamed._serialize sets them
_TBRANCH_BITS = 0x00400000  # kDoNotUseBufferMap, as uproot and ROOT set it on branches
_TLEAF_SPECIAL = {  # TLeaf<X> v1 after its TLeaf base: fMinimum, fMaximum
    "O": uproot.models.TLeaf._tleafO1_format1,
    "B": uproot.models.TLeaf._tleafb1_format1,
    "S": uproot.models.TLeaf._tleafs1_format1,
    "I": uproot.models.TLeaf._tleafi1_format1,
    "L": uproot.models.TLeaf._tleafl1_format0,
    "F": uproot.models.TLeaf._tleaff1_format1,
    "D": uproot.models.TLeaf._tleafd1_format1,
}
# An empty TObjArray, for fBranches and fBaskets of every branch (uproot's bytes).
_EMPTY_TOBJARRAY = b"@\x00\x00\x15\x00\x03\x00\x01\x00\x00\x00\x00\x03\x00\x00\x00" + b"\x00" * 9
_TIOFEATURES = b"@\x00\x00\x07\x00\x00\x1a\xa1/\x10\x00"
_TATTFILL = b"@\x00\x00\x06\x00\x02\x00\x00\x03\xe9"  # fFillColor 0, fFillStyle 1001
# TAttLine (602, 1, 1), TAttFill (0, 1001), TAttMarker (1, 1, 1.0) of the TTree
_TTREE_ATTRIBUTES = (
    b"@\x00\x00\x08\x00\x02\x02Z\x00\x01\x00\x01"
    b"@\x00\x00\x06\x00\x02\x00\x00\x03\xe9"
    b"@\x00\x00\n\x00\x02\x00\x01\x00\x01?\x80\x00\x00"
)


def class_checksum(class_name: str) -> int:
    """ROOT's TClass::GetCheckSum of an STL collection: h = 3h + c over its name, modulo 2**32.

    A collection has no members to add to the sum; the value equals fCheckSum of the
    TBranchElements ROOT 6.40 writes for every ``vector<T>`` of a number (tested for all).
    """
    checksum = 0
    for byte in class_name.encode():
        checksum = (checksum * 3 + byte) & 0xFFFFFFFF
    return checksum


def vector_entries(
    offsets: npt.NDArray[np.int64], content: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The entries of a ``std::vector<T>`` branch as TBufferFile writes them, and where each starts.

    Entry i is ``bytecount | 0x40000000`` (u32, the bytes after this word), the version (u16), its
    size n (i32), then its n elements big-endian. `content` must already be big-endian; offsets
    (N + 1 of them, from 0) say which of its elements belong to each entry.

    Vectorised, in three passes whatever the number of entries: the headers go in as one 10-byte
    item per entry (a view of the output whose items start at every byte); a mask of the header
    positions, marked the same way, then places all elements in one boolean assignment, which
    copies each entry's elements as one run. With elements of 2 bytes or more every entry starts
    on an even byte (not on a multiple of 4: the headers are 10 bytes), so mask and copy move
    2-byte units. The 58 baskets of 60,000 bigfiles rows (1.74 M entries, 169 MB framed) take
    0.09 s, against 0.16 s for a byte mask with ten indices per entry
    (``benchmarks.vector_writer --profile``); the bytes are the same.
    """
    itemsize = content.dtype.itemsize
    sizes = np.diff(offsets)
    starts = np.empty(len(offsets), np.int64)
    starts[0] = 0
    np.cumsum(sizes * itemsize + ENTRY_HEADER_BYTES, out=starts[1:])
    headers = np.empty(len(sizes), ENTRY_HEADER)
    headers["bytecount"] = (sizes * itemsize + 6) | BYTE_COUNT_MASK
    headers["version"] = VECTOR_VERSION
    headers["size"] = sizes
    buffer = np.empty(int(starts[-1]), np.uint8)
    _items_at_every_byte(buffer, ENTRY_HEADER_BYTES)[starts[:-1]] = headers.view(_HEADER_BYTES)
    unit = np.dtype(np.uint16 if itemsize % 2 == 0 else np.uint8)
    is_payload = np.ones(len(buffer) // unit.itemsize, bool)
    header_units = ENTRY_HEADER_BYTES // unit.itemsize
    at_headers = _items_at_every_byte(is_payload.view(np.uint8), header_units)
    at_headers[starts[:-1] // unit.itemsize] = np.zeros((), (np.void, header_units))
    buffer.view(unit)[is_payload] = np.ascontiguousarray(content).view(unit)
    return buffer, starts


def _items_at_every_byte(buffer: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.void]:
    """`buffer` (1-d, contiguous) seen as opaque items of `width` bytes, item k starting at byte k:
    an assignment to items k and m writes bytes k..k+width-1 and m..m+width-1 of `buffer`."""
    count = max(len(buffer) - width + 1, 0)
    return np.ndarray((count,), np.dtype((np.void, width)), buffer, 0, (1,))


class _Blob:
    """A growing byte string of framed ROOT objects, where each frame's size is filled in last."""

    def __init__(self) -> None:
        """An empty blob."""
        self.data = bytearray()

    def __len__(self) -> int:
        """Bytes so far: the offset of whatever is appended next."""
        return len(self.data)

    def add(self, chunk: bytes) -> None:
        """Appends bytes."""
        self.data += chunk

    def begin(self) -> int:
        """Starts an object framed by byte count and version; `end` completes it."""
        self.data += bytes(6)
        return len(self.data) - 6

    def end(self, start: int, version: int) -> None:
        """Completes the frame that `begin` returned `start` for."""
        size = len(self.data) - start - 4
        struct.pack_into(">IH", self.data, start, size | BYTE_COUNT_MASK, version)

    def begin_any(self, class_name: str) -> int:
        """Starts an object behind a pointer (byte count, new-class tag, class name)."""
        start = len(self.data)
        self.data += bytes(8) + class_name.encode() + b"\x00"
        return start

    def end_any(self, start: int) -> None:
        """Completes the pointer frame that `begin_any` returned `start` for."""
        size = len(self.data) - start - 4
        struct.pack_into(">II", self.data, start, size | BYTE_COUNT_MASK, _NEW_CLASS_TAG)

    def tnamed(self, name: str, title: str, bits: int) -> None:
        """A TNamed v1 with its TObject v1 base."""
        start = self.begin()
        self.add(struct.pack(">HII", 1, 0, bits | _TNAMED_BITS))
        self.add(uproot.serialization.string(name) + uproot.serialization.string(title))
        self.end(start, 1)


class CascadeTree(cascadetree.Tree):  # type: ignore[misc]  # uproot has no type hints
    """uproot's writable TTree, with ``std::vector<T>`` branches and uproot's own for the rest.

    Each branch's datum is uproot's (``Tree._branch_np``), so that ``write_updates`` and
    ``_relocate`` keep working; a vector branch has kind ``"vector"`` and its class name, a
    counter kind ``"counter"`` (as uproot's counters: fIsRange set, fMaximum kept up to date).
    """

    _basket_capacity: int  # set by uproot's Tree

    def __init__(self, directory: Any, name: str, title: str, branches: Sequence[BranchType]):
        """A tree of `branches` (a counter before the arrays it counts) in a cascading directory."""
        specs = [
            (b.name, np.dtype((b.dtype, b.shape)) if b.kind == "fixed" else b.dtype)
            for b in branches
        ]
        super().__init__(
            directory,
            name,
            title,
            specs,
            directory.freesegments,
            lambda counted: "n" + counted,  # unused: no branch is given as jagged here
            lambda outer, inner: inner,  # unused: no records
            10,  # initial_basket_capacity and resize_factor: uproot's defaults
            10.0,
        )
        self.branch_types = tuple(branches)
        counters = {b.counter for b in branches if b.kind == "counted"}
        for branch in branches:
            datum = self._branch_data[self._branch_lookup[branch.name]]
            if branch.name in counters:
                datum["kind"] = "counter"
            elif branch.kind == "counted":
                assert branch.counter is not None
                datum["counter"] = self._branch_data[self._branch_lookup[branch.counter]]
                letter = cascadetree._dtype_to_char[datum["dtype"]]
                datum["fTitle"] = f"{branch.name}[{branch.counter}]/{letter}"
                datum["fEntryOffsetLen"] = 1000
            elif branch.kind == "vector":
                datum["kind"] = "vector"
                datum["class_name"] = branch.class_name
                datum["fTitle"] = branch.name
                datum["fEntryOffsetLen"] = 1000
                datum["fSplitLevel"] = 99  # what ROOT writes; a vector of numbers has no parts

    def extend(self, file: Any, sink: Any, data: Any) -> None:
        """Refuses uproot's ``WritableTree.extend``, which would make counters of jagged input."""
        raise TypeError("fill this tree with balanced_batches.io.ttree_writer.TreeWriter.extend")

    def write_entries(
        self,
        file: Any,
        sink: Any,
        columns: dict[str, tuple[np.ndarray, npt.NDArray[np.int64] | None]],
        num_entries: int,
    ) -> None:
        """Writes one basket per branch: `columns` maps every branch to its big-endian values and,
        for a jagged branch, its offsets (N + 1, from 0); then ``write_updates`` records them in
        the tree's metadata.

        Each payload is handed to the compression threads as soon as it is built, and written
        in branch order once compressed; at most two baskets per thread wait to be written, so
        building, compressing and writing overlap and the payloads in memory stay few."""
        self._grow_basket_arrays(file, sink)
        compressor = _baskets.Compressor()
        pending: deque[tuple[dict[str, Any], _baskets.Basket, Future[bytes] | bytes]] = deque()
        written: list[tuple[int, int]] = []
        for datum in self._branch_data:
            name = datum["fName"]
            values, offsets = columns[name]
            if datum["kind"] == "vector":
                assert offsets is not None
                values, offsets = vector_entries(offsets, values)
            if offsets is not None:
                datum["fEntryOffsetLen"] = 4 * (len(offsets) - 1)  # as uproot: 4 bytes per entry
            elif datum["kind"] == "counter" and len(values) > 0:
                datum["tleaf_maximum_value"] = max(int(values.max()), datum["tleaf_maximum_value"])
            basket, payload = _baskets.basket(self._name, name, values, offsets)
            pending.append((datum, basket, compressor.compress(payload, datum["compression"])))
            del payload  # kept by the compressor only until compressed
            while len(pending) > compressor.window:
                written.append(self._write_basket(sink, *pending.popleft()))
        written += [self._write_basket(sink, *waiting) for waiting in pending]
        for datum in self._branch_data:
            entries = datum["fBasketEntry"]
            entries[self._num_baskets + 1] = entries[self._num_baskets] + num_entries
            datum["arrays_write_stop"] = self._num_baskets + 1
        uncompressed = sum(totbytes for totbytes, _ in written)
        compressed = sum(zipbytes for _, zipbytes in written)
        self._num_entries += num_entries
        self._num_baskets += 1
        self._metadata["fTotBytes"] += uncompressed
        self._metadata["fZipBytes"] += compressed
        self.write_updates(sink)

    def _write_basket(
        self,
        sink: Any,
        datum: dict[str, Any],
        basket: _baskets.Basket,
        compressed: Future[bytes] | bytes,
    ) -> tuple[int, int]:
        """Places a compressed basket in the file and records it in its branch; returns its
        uncompressed and compressed bytes (with the key)."""
        data = compressed.result() if isinstance(compressed, Future) else compressed
        location, totbytes, nbytes = _baskets.write_basket(
            sink, self._freesegments, self._directory.key.location, basket, data
        )
        datum["fTotBytes"] += totbytes
        datum["fZipBytes"] += nbytes
        datum["fBasketBytes"][self._num_baskets] = nbytes
        datum["fBasketSeek"][self._num_baskets] = location
        return totbytes, nbytes

    def trim_basket_arrays(self, file: Any, sink: Any) -> None:
        """Shrinks fBasketBytes/fBasketEntry/fBasketSeek to what ROOT writes: fMaxBaskets =
        max(10, fWriteBasket + 1). ROOT's TBranch::Streamer sizes the in-memory list of baskets
        by fWriteBasket and grows it only when fWriteBasket reaches fMaxBaskets, so a larger
        fMaxBaskets (uproot's reserve after 10 baskets) makes hadd's fast merge (TTreeCloner)
        index past that list ("TObjArray::At: index out of bounds"). One rewrite of the tree's
        metadata, after the last basket."""
        tight = max(10, self._num_baskets + 1)
        if self._basket_capacity <= tight:
            return
        self._basket_capacity = tight
        for datum in self._branch_data:
            for member in ("fBasketBytes", "fBasketEntry", "fBasketSeek"):
                datum[member] = datum[member][:tight].copy()
        self._relocate(file, sink)

    def _grow_basket_arrays(self, file: Any, sink: Any) -> None:
        """Makes room for one more basket per branch, as ``Tree.extend`` does: when the next one
        would fill fBasketBytes/fBasketEntry/fBasketSeek (fBasketEntry needs one slot more), they
        are enlarged by the resize factor and the tree's metadata is rewritten elsewhere."""
        if self._num_baskets < self._basket_capacity - 1:
            return
        self._basket_capacity = max(
            self._basket_capacity + 1, math.ceil(self._basket_capacity * self._resize_factor)
        )
        for datum in self._branch_data:
            for member, dtype in (
                ("fBasketBytes", uproot.models.TBranch._tbranch13_dtype1),
                ("fBasketEntry", uproot.models.TBranch._tbranch13_dtype2),
                ("fBasketSeek", uproot.models.TBranch._tbranch13_dtype3),
            ):
                grown = np.zeros(self._basket_capacity, dtype)
                grown[: len(datum[member])] = datum[member]
                datum[member] = grown
        self._relocate(file, sink)

    def _build_out(self) -> list[bytes]:
        """The TTree object (everything but its baskets), recording where ``write_updates`` patches
        it: the tree's fEntries (``_metadata_start``), each branch's fCompress
        (``metadata_start``) and basket arrays (``basket_metadata_start``), and each leaf's
        reference number (for fLeafCount and the tree's fLeaves)."""
        blob = _Blob()
        string = uproot.serialization.string
        key_bytes = uproot.reading._key_format_big.size + len(string("TTree"))
        key_bytes += len(string(self._name)) + len(string(self._title))
        tree = blob.begin()
        blob.tnamed(self._name, self._title, int(uproot.const.kMustCleanup))
        blob.add(_TTREE_ATTRIBUTES)
        self._metadata_start = len(blob)
        blob.add(self._ttree_metadata())
        # fClusterRangeEnd and fClusterSize (empty, with their speed bumps), fIOFeatures
        blob.add(b"\x00\x00" + _TIOFEATURES)
        branches = blob.begin()
        blob.add(b"\x00\x01\x00\x00\x00\x00\x03\x00@\x00\x00")  # TObject, fName ""
        blob.add(uproot.models.TObjArray._tobjarray_format1.pack(len(self._branch_data), 0))
        for datum in self._branch_data:
            if datum["kind"] == "vector":
                element = blob.begin_any("TBranchElement")
                branch_element = blob.begin()
                self._tbranch(blob, datum, key_bytes)
                blob.add(string(datum["class_name"]) + string("") + string(""))
                blob.add(
                    struct.pack(
                        ">IhiiiiII",
                        class_checksum(datum["class_name"]),
                        VECTOR_CLASS_VERSION,
                        -1,  # fID
                        0,  # fType
                        -1,  # fStreamerType
                        0,  # fMaximum
                        0,  # fBranchCount: null
                        0,  # fBranchCount2: null
                    )
                )
                blob.end(branch_element, 10)
                blob.end_any(element)
            else:
                branch = blob.begin_any("TBranch")
                self._tbranch(blob, datum, key_bytes)
                blob.end_any(branch)
        blob.end(branches, 3)
        # fLeaves: a TObjArray of references to the leaves above
        references = [datum["tleaf_reference_number"] for datum in self._branch_data]
        leaves = blob.begin()
        blob.add(b"\x00\x01\x00\x00\x00\x00\x03\x00\x00\x00\x00")
        blob.add(struct.pack(f">ii{len(references)}I", len(references), 0, *references))
        blob.end(leaves, 3)
        # null fAliases, empty fIndexValues and fIndex, null fTreeIndex, fFriends, fUserInfo,
        # fBranchRef
        blob.add(bytes(28))
        blob.end(tree, 20)
        return [bytes(blob.data)]

    def _ttree_metadata(self) -> bytes:
        """fEntries ... fEstimate of the TTree, as ``write_updates`` rewrites them."""
        metadata = self._metadata
        return bytes(
            uproot.models.TTree._ttree20_format1.pack(
                self._num_entries,
                *(metadata[name] for name in _TTREE_METADATA),
            )
        )

    def _tbranch(self, blob: _Blob, datum: dict[str, Any], key_bytes: int) -> None:
        """A TBranch v13 with its one leaf; for a vector branch, the base of its TBranchElement."""
        branch = blob.begin()
        blob.tnamed(datum["fName"], datum["fTitle"], _TBRANCH_BITS)
        blob.add(_TATTFILL)
        datum["metadata_start"] = len(blob)
        blob.add(
            uproot.models.TBranch._tbranch13_format1.pack(
                0,  # fCompress: uproot's choice (see Tree._build_out), so ROOT reads each header
                datum["fBasketSize"],
                datum["fEntryOffsetLen"],
                self._num_baskets,  # fWriteBasket
                self._num_entries,  # fEntryNumber
            )
        )
        blob.add(_TIOFEATURES)
        blob.add(
            uproot.models.TBranch._tbranch13_format2.pack(
                datum["fOffset"],
                self._basket_capacity,  # fMaxBaskets
                datum["fSplitLevel"],
                self._num_entries,  # fEntries
                datum["fFirstEntry"],
                datum["fTotBytes"],
                datum["fZipBytes"],
            )
        )
        blob.add(_EMPTY_TOBJARRAY)  # fBranches
        leaves = blob.begin()
        blob.add(b"\x00\x01\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00")
        datum["tleaf_reference_number"] = key_bytes + len(blob) + _MAP_OFFSET
        if datum["kind"] == "vector":
            self._tleaf_element(blob, datum["fName"])
        else:
            self._tleaf(blob, datum)
        blob.end(leaves, 3)
        blob.add(_EMPTY_TOBJARRAY)  # fBaskets
        datum["basket_metadata_start"] = len(blob)
        for member in ("fBasketBytes", "fBasketEntry", "fBasketSeek"):
            blob.add(b"\x01" + datum[member].tobytes())  # a speed bump, then the array
        blob.add(b"\x00")  # fFileName ""
        blob.end(branch, 13)

    def _tleaf(self, blob: _Blob, datum: dict[str, Any]) -> None:
        """TLeaf<X> v1 of a scalar, fixed-size or counted branch, as uproot writes it."""
        letter = cascadetree._dtype_to_char[datum["dtype"]]
        special = _TLEAF_SPECIAL[letter.upper()]
        dims = "".join(f"[{n}]" for n in datum["shape"])
        if datum["counter"] is not None:
            dims = f"[{datum['counter']['fName']}]{dims}"
        start = blob.begin_any("TLeaf" + letter.upper())
        leaf = blob.begin()
        base = blob.begin()
        blob.tnamed(datum["fName"], datum["fName"] + dims, 0)
        blob.add(
            uproot.models.TLeaf._tleaf2_format0.pack(
                math.prod(datum["shape"]),  # fLen
                datum["dtype"].itemsize,  # fLenType
                0,  # fOffset
                datum["kind"] == "counter",  # fIsRange
                letter != letter.upper(),  # fIsUnsigned
            )
        )
        count = datum["counter"]
        blob.add(struct.pack(">I", 0 if count is None else count["tleaf_reference_number"]))
        blob.end(base, 2)
        # fMinimum, fMaximum: a counter's is the largest size so far (ROOT sizes its read buffers
        # of the counted arrays by it); write_updates keeps it up to date between rewrites
        maximum = datum["tleaf_maximum_value"] if datum["kind"] == "counter" else 0
        blob.add(special.pack(0, maximum))
        datum["tleaf_special_struct"] = special
        blob.end(leaf, 1)
        blob.end_any(start)

    @staticmethod
    def _tleaf_element(blob: _Blob, name: str) -> None:
        """TLeafElement v1 of a vector branch, as ROOT 6.40 writes it."""
        start = blob.begin_any("TLeafElement")
        leaf = blob.begin()
        base = blob.begin()
        blob.tnamed(name, name, 0)
        blob.add(uproot.models.TLeaf._tleaf2_format0.pack(1, 0, 0, False, False))
        blob.add(b"\x00\x00\x00\x00")  # fLeafCount: null
        blob.end(base, 2)
        blob.add(struct.pack(">ii", -1, -1))  # fID, fType
        blob.end(leaf, 1)
        blob.end_any(start)


_TTREE_METADATA = (
    "fTotBytes",
    "fZipBytes",
    "fSavedBytes",
    "fFlushedBytes",
    "fWeight",
    "fTimerInterval",
    "fScanField",
    "fUpdate",
    "fDefaultEntryOffsetLen",
    "fNClusterRange",
    "fMaxEntries",
    "fMaxEntryLoop",
    "fMaxVirtualSize",
    "fAutoSave",
    "fAutoFlush",
    "fEstimate",
)
