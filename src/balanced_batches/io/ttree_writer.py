"""TTrees with ``std::vector<T>`` branches, written with uproot's own machinery.

uproot (<= 5.7) writes a jagged TTree branch only as a counted C array, ``x[nx]/F`` with a counter
branch ``nx`` (scikit-hep/uproot5#257, #1486). C++ that binds ``std::vector<T>*`` with
``TTree::SetBranchAddress`` (CMS TauMLTools' TauTuple) reads garbage from such a branch, and
``TTreeReaderValue<std::vector<T>>`` refuses it. Here every branch keeps the on-disk type it had in
the input:

- ``scalar``: ``x/F``, ``x/I``, ``x/l``, ``x/O``, ... (TBranch + TLeaf<X>), as uproot writes them;
- ``fixed``: ``x[3]/F``, a fixed number of values per entry, as uproot writes them;
- ``counted``: ``x[n]/F`` with its counter ``n``, itself a scalar integer branch of the tree, as
  uproot writes them;
- ``vector``: ``std::vector<T>`` of a number (bool, [u]int8..64, float, double), as ROOT 6.40
  writes it: a TBranchElement with a TLeafElement, each entry framed as TBufferFile frames a
  collection (byte count | 0x40000000, version 10, int32 size, big-endian elements), the basket's
  entry offsets after the data, no counter branch; the file's StreamerInfo gets the TBranchElement
  and TLeafElement records ROOT adds. Details and references: `balanced_batches.io._ttree_cascade`.

Use inside ``uproot.recreate`` (its compression applies; the output depends on nothing but the input
and the file's own time stamp and UUID)::

    with (
        uproot.recreate(path, compression=uproot.ZSTD(5)) as file,
        mktree(file, "taus", branch_types(uproot.open(source)["taus"])) as tree,
    ):
        tree.extend({"tau_pt": pt, "pfCand_pt": (offsets, content), ...})

This module uses nothing else of balanced_batches, so that it can be offered to uproot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import awkward as ak
import numpy as np
import numpy.typing as npt
import uproot

from balanced_batches.io import _streamers
from balanced_batches.io._ttree_cascade import CascadeTree

BranchKind = Literal["scalar", "vector", "counted", "fixed"]
BranchData: TypeAlias = np.ndarray | tuple[np.ndarray, np.ndarray] | ak.Array

# numpy type -> how ROOT spells it in a vector's class name, ROOT's own choice for that type first
# (what ``tree.Branch(name, std::vector<T>)`` of PyROOT gives for every alias of T was checked:
# Long64_t and long long give vector<Long64_t>, long and int64_t vector<long>, Char_t vector<char>).
VECTOR_ELEMENTS: dict[str, tuple[str, ...]] = {
    "bool": ("bool",),
    "int8": ("char", "signed char"),
    "uint8": ("unsigned char",),
    "int16": ("short",),
    "uint16": ("unsigned short",),
    "int32": ("int",),
    "uint32": ("unsigned int",),
    "int64": ("Long64_t", "long"),
    "uint64": ("ULong64_t", "unsigned long"),
    "float32": ("float",),
    "float64": ("double",),
}
_ELEMENT_DTYPES = {name: np.dtype(t) for t, names in VECTOR_ELEMENTS.items() for name in names}
# TLeaf classes of a plain TBranch whose values uproot writes back with the same class
_LEAF_DTYPES = {
    "TLeafO": ("bool", "bool"),
    "TLeafB": ("int8", "uint8"),
    "TLeafS": ("int16", "uint16"),
    "TLeafI": ("int32", "uint32"),
    "TLeafL": ("int64", "uint64"),
    "TLeafF": ("float32", "float32"),
    "TLeafD": ("float64", "float64"),
}


@dataclass(frozen=True)
class BranchType:
    """The on-disk type of one branch.

    `dtype` is the type of one value (native byte order once constructed); `counter` names the
    counter branch of a ``counted`` branch; `shape` is the per-entry shape of a ``fixed`` one;
    `element` is how the class name of a ``vector`` spells its element type (ROOT tells
    ``vector<long>`` from ``vector<Long64_t>``), by default ROOT's own spelling for `dtype`.
    """

    name: str
    kind: BranchKind
    dtype: np.dtype[Any]
    counter: str | None = None
    shape: tuple[int, ...] = ()
    element: str | None = None

    def __post_init__(self) -> None:
        """Normalises dtype, shape and element, and refuses combinations ROOT cannot hold."""
        dtype = np.dtype(self.dtype).newbyteorder("=")
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        if dtype.name not in VECTOR_ELEMENTS:
            raise ValueError(f"branch {self.name!r}: {dtype} is not a number type ROOT writes")
        if (self.kind == "counted") != (self.counter is not None):
            raise ValueError(f"branch {self.name!r}: a counter goes with kind 'counted' only")
        if (self.kind == "fixed") != (len(self.shape) > 0) or any(n < 1 for n in self.shape):
            raise ValueError(f"branch {self.name!r}: a shape (of sizes >= 1) goes with 'fixed'")
        if self.kind == "vector":
            element = self.element or VECTOR_ELEMENTS[dtype.name][0]
            if element not in VECTOR_ELEMENTS[dtype.name]:
                raise ValueError(
                    f"branch {self.name!r}: vector<{element}> does not hold {dtype}; "
                    f"use one of {VECTOR_ELEMENTS[dtype.name]}"
                )
            object.__setattr__(self, "element", element)
        elif self.element is not None:
            raise ValueError(f"branch {self.name!r}: an element type goes with kind 'vector'")
        elif self.kind not in ("scalar", "counted", "fixed"):
            raise ValueError(f"branch {self.name!r}: unknown kind {self.kind!r}")

    @property
    def class_name(self) -> str:
        """The C++ class of a vector branch as ROOT names it, e.g. ``vector<float>``."""
        return f"vector<{self.element}>"


def branch_types(tree: Any) -> list[BranchType]:
    """The on-disk types of a TTree opened with uproot, in branch order (counters as scalars).

    Raises ValueError naming the first branch this module cannot write with its type unchanged:
    strings, objects, nested or non-numeric vectors, split (sub-branched) and multi-leaf branches,
    counted arrays with more dimensions, Float16_t/Double32_t, Long_t scalars.
    """
    types = [_branch_type(branch) for branch in tree.branches]
    _check_branches(types)
    return types


def _branch_type(branch: Any) -> BranchType:
    """The type of one branch read by uproot (see `branch_types`)."""
    name = branch.name
    leaves = branch.member("fLeaves")
    if len(branch.branches) > 0 or len(leaves) != 1:
        raise ValueError(f"branch {name!r} has sub-branches or several leaves: not writable")
    leaf = leaves[0]
    if leaf.classname == "TLeafElement":
        class_name = str(branch.member("fClassName"))
        match = re.fullmatch(r"vector<(.+)>", class_name)
        top_level = branch.member("fType") == 0 and branch.member("fStreamerType") == -1
        if match is None or match[1] not in _ELEMENT_DTYPES or not top_level:
            raise ValueError(f"branch {name!r} holds {class_name}, not a vector of numbers")
        return BranchType(name, "vector", _ELEMENT_DTYPES[match[1]], element=match[1])
    if leaf.classname not in _LEAF_DTYPES:
        raise ValueError(f"branch {name!r} has a {leaf.classname} leaf, which cannot be written")
    dtype = np.dtype(_LEAF_DTYPES[leaf.classname][int(bool(leaf.member("fIsUnsigned")))])
    count = leaf.member("fLeafCount")
    if count is not None:
        if leaf.member("fLen") != 1:
            raise ValueError(f"branch {name!r} is a counted array of arrays; it cannot be written")
        return BranchType(name, "counted", dtype, counter=count.member("fName"))
    shape = tuple(int(n) for n in re.findall(r"\[(\d+)\]", leaf.member("fTitle")))
    if int(np.prod(shape)) != leaf.member("fLen"):
        raise ValueError(f"branch {name!r}: leaf title {leaf.member('fTitle')!r} has no shape")
    return BranchType(name, "fixed" if shape else "scalar", dtype, shape=shape)


def _check_branches(branches: Sequence[BranchType]) -> None:
    """Refuses an empty tree, repeated names and counters that are not scalar integer branches."""
    if not branches:
        raise ValueError("a TTree needs at least one branch")
    by_name: dict[str, BranchType] = {}
    for branch in branches:
        if branch.name in by_name:
            raise ValueError(f"branch {branch.name!r} appears twice")
        by_name[branch.name] = branch
    for branch in branches:
        if branch.counter is None:
            continue
        counter = by_name.get(branch.counter)
        if counter is None or counter.kind != "scalar" or counter.dtype.kind not in "iu":
            raise ValueError(
                f"branch {branch.name!r}: its counter {branch.counter!r} must be a scalar "
                "integer branch of the tree"
            )


def _writing_order(branches: Sequence[BranchType]) -> list[BranchType]:
    """The branches in their order, except that a counter moves before the first array it counts
    (a counted leaf refers to its counter's leaf, which must be written first)."""
    by_name = {branch.name: branch for branch in branches}
    order: dict[str, BranchType] = {}
    for branch in branches:
        if branch.counter is not None:
            order.setdefault(branch.counter, by_name[branch.counter])
        order.setdefault(branch.name, branch)
    return list(order.values())


class TreeWriter:
    """A TTree being written; each `extend` adds one basket to every branch, `close` ends it.

    Use it in a ``with`` statement (or call `close`): after more than nine `extend` calls, the
    tree's basket arrays hold room for more baskets than it has, which ROOT's own files never
    do and which hadd's fast merge trips over; `close` trims them.
    """

    def __init__(self, file: Any, cascade: CascadeTree) -> None:
        """Wraps the cascade of a tree in an uproot WritableFile; made by `mktree`."""
        self._file = file
        self._cascade = cascade
        self._closed = False

    def __enter__(self) -> TreeWriter:
        """The writer itself."""
        return self

    def __exit__(self, *exception: object) -> None:
        """Closes the tree (its file stays open)."""
        self.close()

    def close(self) -> None:
        """Ends the tree: its basket arrays shrink to what ROOT writes; no more `extend`."""
        if not self._closed and not self._file.sink.closed:
            self._cascade.trim_basket_arrays(self._file, self._file.sink)
        self._closed = True

    @property
    def branches(self) -> tuple[BranchType, ...]:
        """The branches, in the order they are written."""
        return self._cascade.branch_types

    @property
    def num_entries(self) -> int:
        """The number of entries written so far."""
        return int(self._cascade.num_entries)

    def extend(self, data: Mapping[str, BranchData]) -> None:
        """Appends entries: one array per branch, all with the same number of entries.

        Scalars and fixed-size arrays take numpy arrays; vectors and counted arrays take
        ``(offsets, content)`` (int offsets, N + 1 of them) or a jagged awkward array. A counter may
        be left out: its values are then the sizes of the arrays it counts, which must agree.
        Values are cast to each branch's type (same kind only: no float into int). Zero entries
        write nothing (ROOT would meet an empty basket).
        """
        if self._closed or self._file.sink.closed:
            raise ValueError("cannot extend a closed TTree or a TTree of a closed file")
        columns, num_entries = _columns(self._cascade.branch_types, data)
        if num_entries > 0:
            self._cascade.write_entries(self._file, self._file.sink, columns, num_entries)


def mktree(
    directory: Any, name: str, branches: Sequence[BranchType], title: str = ""
) -> TreeWriter:
    """Creates an empty TTree in an uproot WritableDirectory (for instance a file of
    ``uproot.recreate``), to be filled with `TreeWriter.extend` and ended with
    `TreeWriter.close` (or a ``with`` statement)."""
    _check_branches(branches)
    if "/" in name:
        raise ValueError(f"tree name {name!r}: make the directory with mkdir and pass it instead")
    file = directory._file
    if file.sink.closed:
        raise ValueError("cannot create a TTree in a closed file")
    cascade = CascadeTree(directory._cascading, name, title, _writing_order(branches))
    cascade.write_anew(file.sink)
    # registered as uproot registers its trees: its relocation (more baskets than room for their
    # positions) finds it there, and file[name] returns it
    file._new_tree(uproot.writing.writable.WritableTree((*directory._path, name), file, cascade))
    file._cascading.streamers.update_streamers(file.sink, _streamers_for(branches))
    return TreeWriter(file, cascade)


def _streamers_for(branches: Sequence[BranchType]) -> list[Any]:
    """The StreamerInfo records the tree's classes need: uproot's for TTree, TBranch and its
    TLeaf<X> classes (those uproot's mktree adds), and TBranchElement and TLeafElement if any
    branch is a vector (those ROOT adds for it)."""
    leaves = uproot.models.TLeaf
    models = (
        leaves.Model_TLeafB_v1,
        leaves.Model_TLeafS_v1,
        leaves.Model_TLeafI_v1,
        leaves.Model_TLeafL_v1,
        leaves.Model_TLeafF_v1,
        leaves.Model_TLeafD_v1,
        leaves.Model_TLeafC_v1,
        leaves.Model_TLeafO_v1,
        uproot.models.TBranch.Model_TBranch_v13,
        uproot.models.TTree.Model_TTree_v20,
    )
    raw = [streamer for model in models for streamer in model.class_rawstreamers]
    if any(branch.kind == "vector" for branch in branches):
        raw.append((None, _streamers.TBRANCHELEMENT_V10, "TBranchElement", 10))
        raw.append((None, _streamers.TLEAFELEMENT_V1, "TLeafElement", 1))
    return [uproot.writing._cascade.RawStreamerInfo(*streamer) for streamer in raw]


def _columns(
    branches: Sequence[BranchType], data: Mapping[str, BranchData]
) -> tuple[dict[str, tuple[np.ndarray, npt.NDArray[np.int64] | None]], int]:
    """Every branch's big-endian values (and offsets, for a jagged one), and the entry count."""
    names = {branch.name for branch in branches}
    unknown = [name for name in data if name not in names]
    if unknown:
        raise ValueError(f"no branch of this tree is named {', '.join(map(repr, unknown))}")
    columns: dict[str, tuple[np.ndarray, npt.NDArray[np.int64] | None]] = {}
    sizes: dict[str, tuple[str, np.ndarray]] = {}  # counter -> (first array counted, its sizes)
    for branch in branches:
        if branch.kind in ("vector", "counted"):
            if branch.name not in data:
                raise ValueError(f"extend has no values for branch {branch.name!r}")
            offsets, content = _jagged(branch, data[branch.name])
            columns[branch.name] = (content, offsets)
            if branch.counter is not None:
                first = sizes.setdefault(branch.counter, (branch.name, np.diff(offsets)))
                if not np.array_equal(first[1], np.diff(offsets)):
                    raise ValueError(
                        f"branches {first[0]!r} and {branch.name!r} share the counter "
                        f"{branch.counter!r} but their sizes differ"
                    )
    for branch in branches:
        if branch.kind in ("scalar", "fixed"):
            columns[branch.name] = (_flat(branch, data, sizes.get(branch.name)), None)
    lengths = {
        name: len(values) if offsets is None else len(offsets) - 1
        for name, (values, offsets) in columns.items()
    }
    num_entries = next(iter(lengths.values()))
    for name, length in lengths.items():
        if length != num_entries:
            raise ValueError(f"branch {name!r} has {length} entries, others {num_entries}")
    return columns, num_entries


def _flat(
    branch: BranchType, data: Mapping[str, BranchData], counted: tuple[str, np.ndarray] | None
) -> np.ndarray:
    """A scalar or fixed-size branch's values, big-endian; a counter's may be derived."""
    big_endian = branch.dtype.newbyteorder(">")
    if branch.name not in data:
        if counted is None:
            raise ValueError(f"extend has no values for branch {branch.name!r}")
        sizes = counted[1]
        if len(sizes) > 0 and sizes.max() > np.iinfo(branch.dtype).max:
            raise ValueError(f"counter {branch.name!r} cannot hold the size {sizes.max()}")
        return sizes.astype(big_endian)
    value = data[branch.name]
    if isinstance(value, tuple):
        raise TypeError(f"branch {branch.name!r} is not jagged; give a numpy array")
    array = value.to_numpy() if isinstance(value, ak.Array) else np.asarray(value)
    if array.shape[1:] != branch.shape:
        raise ValueError(
            f"branch {branch.name!r} holds {branch.shape or 'one value'} per entry, "
            f"not {array.shape[1:]}"
        )
    values = _cast(branch, array, big_endian)
    if counted is not None and not np.array_equal(values, counted[1]):
        raise ValueError(f"counter {branch.name!r} disagrees with the sizes of {counted[0]!r}")
    return values


def _jagged(branch: BranchType, value: BranchData) -> tuple[npt.NDArray[np.int64], np.ndarray]:
    """A vector or counted branch's offsets (from 0) and big-endian content."""
    if isinstance(value, tuple):
        offsets, content = (np.asarray(x) for x in value)
    elif isinstance(value, ak.Array):
        offsets, content = _awkward_lists(branch, value)
    else:
        raise TypeError(f"branch {branch.name!r} is jagged; give (offsets, content) or awkward")
    if offsets.ndim != 1 or len(offsets) == 0 or offsets.dtype.kind not in "iu":
        raise ValueError(f"branch {branch.name!r}: offsets must be a 1-d integer array, N + 1 long")
    offsets = offsets.astype(np.int64)
    if content.ndim != 1 or np.any(offsets[1:] < offsets[:-1]) or offsets[-1] > len(content):
        raise ValueError(f"branch {branch.name!r}: offsets must rise and stay within the content")
    # a slice of a larger array starts past 0: keep only its own content
    content = content[offsets[0] : offsets[-1]]
    return offsets - offsets[0], _cast(branch, content, branch.dtype.newbyteorder(">"))


def _awkward_lists(branch: BranchType, array: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and flat content of a 1-d jagged awkward array of numbers."""
    layout = ak.to_layout(array)
    if isinstance(layout, ak.contents.EmptyArray):  # ak.Array([]): no entries, no type
        return np.zeros(1, np.int64), np.zeros(0, branch.dtype)
    if isinstance(layout, ak.contents.IndexedArray):
        layout = layout.project()
    if not isinstance(layout, ak.contents.ListOffsetArray | ak.contents.ListArray):
        raise ValueError(f"branch {branch.name!r}: {array.type} is not a list of numbers")
    layout = layout.to_ListOffsetArray64(True)
    content = layout.content
    if isinstance(content, ak.contents.EmptyArray):
        content = content.to_NumpyArray(branch.dtype)
    if not isinstance(content, ak.contents.NumpyArray) or content.data.ndim != 1:
        raise ValueError(f"branch {branch.name!r}: {array.type} is not a list of numbers")
    return np.asarray(layout.offsets), np.asarray(content.data)


def _cast(branch: BranchType, values: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """`values` as `dtype`, refusing casts across kinds (float into int, int into bool) and
    integers out of the branch type's range (an int64 array of sizes fits a uint32 counter)."""
    if values.dtype.kind in "iu" and dtype.kind in "iu" and not np.can_cast(values.dtype, dtype):
        limits = np.iinfo(dtype)
        if len(values) > 0 and (values.min() < limits.min or values.max() > limits.max):
            raise ValueError(f"branch {branch.name!r}: values beyond the range of {branch.dtype}")
    elif not np.can_cast(values.dtype, dtype, casting="same_kind"):
        raise TypeError(f"branch {branch.name!r} holds {branch.dtype}, not {values.dtype}")
    return values.astype(dtype, copy=False)
