"""Rows of a tree as plain numpy buffers, for moving many columns cheaply.

`make` selects, routes and reorders rows of ~100 branches many times. Doing that on
awkward records costs a fixed overhead per field and per operation; here a flat
column is one numpy array, and jagged columns that share their counts (the members
of a counted-array group, `pfCand_pt[npfCand]` ...) share one offsets array, so the
index for a selection of rows is computed once per group and applied to every member.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # awkward is imported where arrays are made: `count`'s process needs none
    import awkward as ak


# the integer types ROOT counters have (uproot's type names without `_t`)
_COUNTER_TYPES = frozenset(f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64))


@dataclass(frozen=True)
class BranchGroup:
    """Counted-array branches sharing one counter, written back as one record (`outer_inner`)."""

    outer: str
    counter: str
    members: tuple[str, ...]

    def inner(self, branch: str) -> str:
        """The member's field name inside the record."""
        return branch[len(self.outer) + 1 :]


@dataclass(frozen=True)
class BranchLayout:
    """How a tree's branches map onto arrays: flat columns (`scalars`: one value or one
    fixed-size array of values per entry), counted groups, lone jagged branches (`vectors`:
    those of them the input holds as `std::vector<T>`, which outputs keep so).

    `types` gives every branch's type as the input spells it (`float`, `float[3]`,
    `int32_t[2][2]`, `double[nc]` for a counted array, `std::vector<long>`); layouts stored
    before it was recorded have none. `uncopyable` names the branches whose type cannot be
    copied (strings, objects, a counted array of fixed-size items `x[n][3]`), with that type:
    they hold no data here, and outputs must leave them out (`refuse_uncopyable`).
    """

    scalars: tuple[str, ...]
    groups: tuple[BranchGroup, ...]
    singles: tuple[str, ...]
    counters: tuple[str, ...]
    vectors: tuple[str, ...] = ()
    types: tuple[tuple[str, str], ...] = ()
    uncopyable: tuple[tuple[str, str], ...] = ()

    @property
    def data_branches(self) -> tuple[str, ...]:
        """Every branch holding data, counters excluded (writers recreate those)."""
        members = tuple(name for group in self.groups for name in group.members)
        return self.scalars + members + self.singles

    @cached_property
    def type_of(self) -> dict[str, str]:
        """`types` as a mapping, made once: writers ask it branch by branch."""
        return dict(self.types)

    def counter_of(self, name: str) -> str | None:
        """The input's counter of a lone counted array (`nJets` of `jet_pt` typed
        `float[nJets]`, a counter whose name does not make `jet_pt` a group member), or None
        if the layout does not say."""
        spelled = self.type_of.get(name, "")
        counter = spelled.rpartition("[")[2].removesuffix("]")
        return counter if counter in self.counters else None

    def counter_dtype(self, counter: str) -> np.dtype[Any]:
        """A counter's number type in the input (`uint32_t`, as NanoAOD's `nMuon/i`), int32
        where the layout does not say."""
        spelled = self.type_of.get(counter, "int32_t")
        name = spelled.removesuffix("_t")
        return np.dtype(name) if name in _COUNTER_TYPES else np.dtype(np.int32)

    def vector_element(self, name: str) -> str | None:
        """How the input spells the element type of a `std::vector` branch (`long` of
        `std::vector<long>`), or None if the layout does not say."""
        spelled = self.type_of.get(name, "")
        prefix = "std::vector<"
        return spelled[len(prefix) : -1] if spelled.startswith(prefix) else None


def select_branches(
    layout: BranchLayout,
    keep: Sequence[str] | None,
    drop: Sequence[str],
    always: Collection[str] = (),
) -> BranchLayout:
    """The layout with only the data branches matching a `keep` glob pattern (all if None) and
    no `drop` pattern, plus the `always` ones; a counted group keeps its counter while any of
    its members stays."""
    if keep is None and not drop:
        return layout

    def chosen(name: str) -> bool:
        if name in always:
            return True
        kept = keep is None or any(fnmatch.fnmatchcase(name, p) for p in keep)
        return kept and not any(fnmatch.fnmatchcase(name, p) for p in drop)

    groups = []
    for group in layout.groups:
        members = tuple(name for name in group.members if chosen(name))
        if members:
            groups.append(BranchGroup(group.outer, group.counter, members))
    counters = {group.counter for group in groups}
    for name in layout.singles:
        counter = layout.counter_of(name) if chosen(name) else None
        if counter is not None:
            counters.add(counter)
    kept = BranchLayout(
        scalars=tuple(name for name in layout.scalars if chosen(name)),
        groups=tuple(groups),
        singles=tuple(name for name in layout.singles if chosen(name)),
        counters=tuple(name for name in layout.counters if name in counters),
        vectors=tuple(name for name in layout.vectors if chosen(name)),
    )
    names = {*kept.data_branches, *kept.counters}
    return replace(
        kept,
        types=tuple((n, t) for n, t in layout.types if n in names),
        uncopyable=tuple((n, t) for n, t in layout.uncopyable if chosen(n)),
    )


def refuse_uncopyable(layout: BranchLayout, where: str, error: type[Exception]) -> None:
    """`error` naming the first branch of `layout` (as the outputs keep it) whose type cannot
    be copied, and how to leave it out."""
    if layout.uncopyable:
        name, typename = layout.uncopyable[0]
        raise error(
            f"{where}: branch {name!r} has type {typename!r}, which cannot be copied; leave it "
            f"out of the outputs with --drop-branches '{name}'"
        )


def unmatched_patterns(layout: BranchLayout, patterns: Sequence[str]) -> list[str]:
    """The patterns that match none of the layout's data branches (or uncopyable ones)."""
    names = (*layout.data_branches, *(name for name, _ in layout.uncopyable))
    return [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]


def layout_to_json(layout: BranchLayout) -> dict[str, Any]:
    """A branch layout as plain JSON data."""
    return {
        "scalars": list(layout.scalars),
        "groups": [
            {"outer": g.outer, "counter": g.counter, "members": list(g.members)}
            for g in layout.groups
        ],
        "singles": list(layout.singles),
        "counters": list(layout.counters),
        "vectors": list(layout.vectors),
        "types": dict(layout.types),
        "uncopyable": dict(layout.uncopyable),
    }


def layout_from_json(data: dict[str, Any]) -> BranchLayout:
    """Inverse of `layout_to_json`."""
    return BranchLayout(
        scalars=tuple(data["scalars"]),
        groups=tuple(
            BranchGroup(g["outer"], g["counter"], tuple(g["members"])) for g in data["groups"]
        ),
        singles=tuple(data["singles"]),
        counters=tuple(data["counters"]),
        vectors=tuple(data.get("vectors", ())),  # absent from layouts stored before
        types=tuple(data.get("types", {}).items()),  # likewise
        uncopyable=tuple(data.get("uncopyable", {}).items()),  # likewise
    )


def layout_difference(expected: BranchLayout, found: BranchLayout) -> str | None:
    """How the branches of `found` differ from those of `expected` (other branches, or a
    branch of another type), in words; None if they agree. Without `types` in both, only
    the kinds of branch the layouts tell are compared (a layout stored before types were)."""
    names, other = set(expected.data_branches), set(found.data_branches)
    if names != other:
        differing = sorted(names ^ other)[:5]
        return f"branches differ from the other input files: {differing}"
    if expected.types and found.types:
        kinds, other_kinds = dict(expected.types), dict(found.types)
    else:
        kinds, other_kinds = _branch_kinds(expected), _branch_kinds(found)
    for name in (*expected.data_branches, *expected.counters):
        if kinds.get(name) != other_kinds.get(name):
            return (
                f"branch {name!r} is {other_kinds.get(name, 'missing')} here but "
                f"{kinds.get(name, 'missing')} in the other input files"
            )
    return None


def _branch_kinds(layout: BranchLayout) -> dict[str, str]:
    """What a layout without types tells of each data branch."""
    kinds = dict.fromkeys(layout.scalars, "one value per entry")
    for group in layout.groups:
        kinds |= dict.fromkeys(group.members, f"a counted array [{group.counter}]")
    kinds |= dict.fromkeys(layout.singles, "a jagged array")
    return kinds | dict.fromkeys(layout.vectors, "a std::vector")


@dataclass(frozen=True)
class Jagged:
    """Jagged columns with identical counts: one offsets array, one content per column."""

    offsets: np.ndarray  # int64, length rows + 1, starting at 0
    contents: dict[str, np.ndarray]  # may run past offsets[-1] (views into larger buffers)

    @property
    def counts(self) -> np.ndarray:
        """Items per row."""
        return np.diff(self.offsets)


@dataclass(frozen=True)
class RowBlock:
    """`length` rows: flat columns, and jagged columns by collection (a group or one branch)."""

    length: int
    flat: dict[str, np.ndarray] = field(default_factory=dict)
    jagged: dict[str, Jagged] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes the rows hold."""
        flat = sum(values.nbytes for values in self.flat.values())
        jagged = sum(
            collection.offsets.nbytes + sum(c.nbytes for c in collection.contents.values())
            for collection in self.jagged.values()
        )
        return int(flat + jagged)

    def column(self, name: str) -> np.ndarray:
        """A flat column."""
        return self.flat[name]

    def with_flat(self, columns: Mapping[str, np.ndarray]) -> RowBlock:
        """The same rows with more flat columns."""
        return RowBlock(self.length, {**self.flat, **columns}, self.jagged)

    def take(self, index: np.ndarray) -> RowBlock:
        """Rows `index` (any order, repeats allowed), packed into new buffers."""
        index = np.asarray(index, dtype=np.int64)
        flat = {name: np.take(values, index, axis=0) for name, values in self.flat.items()}
        jagged = {}
        # std::vector branches are collections of their own, but most share their sizes with
        # others (all pfCand_* of an entry): their item positions are computed once
        done: dict[tuple[int, int], list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]]] = {}
        for name, collection in self.jagged.items():
            offsets, items = _take_items_once(collection.offsets, index, done)
            contents = {column: np.take(c, items) for column, c in collection.contents.items()}
            jagged[name] = Jagged(offsets, contents)
        return RowBlock(len(index), flat, jagged)


def _take_items_once(
    offsets: np.ndarray,
    index: np.ndarray,
    done: dict[tuple[int, int], list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]]],
) -> tuple[np.ndarray, np.ndarray]:
    """`_take_items`, or what it gave for equal offsets already in `done`, where offsets are
    filed by their length and total (comparing offsets costs a pass over the rows; the items
    are a pass over every item)."""
    candidates = done.setdefault((len(offsets), int(offsets[-1])), [])
    for known, taken in candidates:
        if known is offsets or np.array_equal(known, offsets):
            return taken
    taken = _take_items(offsets, index)
    candidates.append((offsets, taken))
    return taken


def _take_items(offsets: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New offsets of rows `index`, and the content positions of their items in order."""
    starts = offsets[:-1][index]
    counts = offsets[1:][index] - starts
    new_offsets = np.zeros(len(index) + 1, dtype=np.int64)
    np.cumsum(counts, out=new_offsets[1:])
    return new_offsets, item_positions(starts, counts)


def take_from(
    blocks: Sequence[RowBlock],
    which: np.ndarray,
    rows: np.ndarray,
    copied: Callable[[int], None] | None = None,
) -> RowBlock:
    """Row i is row `rows[i]` of `blocks[which[i]]`: rows of several blocks (same columns), in
    any order, copied once into new buffers. Concatenating the blocks and taking from that
    would copy every row twice, the second time into fresh memory.

    The rows are copied block after block, and `copied(b)` is called once block b's rows
    are, for every block that gives rows: a block over a map of a file can then drop its
    pages before the next one is read.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(blocks) == 1:
        taken = blocks[0].take(rows)
        if copied is not None and len(rows):
            copied(0)
        return taken
    which = np.asarray(which, dtype=np.int64)
    by_block = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[by_block], np.arange(len(blocks) + 1))
    # per block: the result's rows it gives (`slot`) and its own row numbers (`pick`)
    sources = [
        (b, slot, rows[slot])
        for b in range(len(blocks))
        if len(slot := by_block[bounds[b] : bounds[b + 1]])
    ]
    length = len(rows)
    first = blocks[0] if blocks else RowBlock(0)
    flat = {
        name: np.empty((length, *values.shape[1:]), dtype=values.dtype)
        for name, values in first.flat.items()
    }
    # where the items go needs only the offsets: worked out before any content is read
    done: list[tuple[np.ndarray, np.ndarray, _Scatter]] = []
    scatters = {
        name: _scatter_once([block.jagged[name].offsets for block in blocks], sources, length, done)
        for name in first.jagged
    }
    jagged = {
        name: Jagged(
            scatters[name].offsets,
            {
                column: np.empty(scatters[name].offsets[-1], dtype=content.dtype)
                for column, content in collection.contents.items()
            },
        )
        for name, collection in first.jagged.items()
    }
    for b, slot, pick in sources:
        block = blocks[b]
        for name, out in flat.items():
            out[slot] = block.flat[name][pick]
        for name, collection in jagged.items():
            into, at = scatters[name].items[b]
            contents = block.jagged[name].contents
            for column, out in collection.contents.items():
                out[into] = contents[column][at]
        if copied is not None:
            copied(b)
    return RowBlock(length, flat, jagged)


@dataclass(frozen=True)
class _Scatter:
    """Where the items of a jagged collection go: the result's offsets, and per block giving
    rows, its items' positions in the result and in the block."""

    offsets: np.ndarray
    items: dict[int, tuple[np.ndarray, np.ndarray]]


def _scatter_once(
    offsets: Sequence[np.ndarray],
    sources: Sequence[tuple[int, np.ndarray, np.ndarray]],
    length: int,
    done: list[tuple[np.ndarray, np.ndarray, _Scatter]],
) -> _Scatter:
    """The scatter of a collection whose blocks have `offsets`, or the one in `done` of a
    collection whose picked rows start and end at the same items (std::vector branches are
    collections of their own, but most share their sizes with others)."""
    starts = np.empty(length, dtype=np.int64)
    counts = np.empty(length, dtype=np.int64)
    for b, slot, pick in sources:
        starts[slot] = offsets[b][pick]
        counts[slot] = offsets[b][pick + 1] - starts[slot]
    for known_starts, known_counts, scatter in done:
        if np.array_equal(known_starts, starts) and np.array_equal(known_counts, counts):
            return scatter
    new_offsets = np.zeros(length + 1, dtype=np.int64)
    np.cumsum(counts, out=new_offsets[1:])
    items = {}
    for b, slot, _ in sources:
        block_counts = counts[slot]
        into = item_positions(new_offsets[slot], block_counts)
        items[b] = (into, item_positions(starts[slot], block_counts))
    scatter = _Scatter(new_offsets, items)
    done.append((starts, counts, scatter))
    return scatter


def item_positions(first: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Every item position of runs that start at `first` and hold `counts` items, in order:
    item k of run r, the result's item `ends[r] - counts[r] + k`, sits at `first[r] + k`."""
    ends = np.cumsum(counts)
    positions = np.arange(ends[-1] if len(ends) else 0, dtype=np.int64)
    positions += np.repeat(first - (ends - counts), counts)
    return positions


def concatenate(blocks: Sequence[RowBlock]) -> RowBlock:
    """Rows of every block, in order; blocks must have the same columns."""
    if len(blocks) == 1:
        return blocks[0]
    first = blocks[0]
    flat = {name: np.concatenate([b.flat[name] for b in blocks]) for name in first.flat}
    jagged = {}
    for name, collection in first.jagged.items():
        parts = [b.jagged[name] for b in blocks]
        offsets = np.zeros(sum(len(p.offsets) - 1 for p in parts) + 1, dtype=np.int64)
        np.cumsum(np.concatenate([p.counts for p in parts]), out=offsets[1:])
        contents = {
            column: np.concatenate([p.contents[column][: p.offsets[-1]] for p in parts])
            for column in collection.contents
        }
        jagged[name] = Jagged(offsets, contents)
    return RowBlock(sum(b.length for b in blocks), flat, jagged)


def collections_of(layout: BranchLayout) -> dict[str, tuple[str, ...]]:
    """Jagged collections of a layout: a counted group's members, or one lone jagged branch."""
    collections = {group.outer: group.members for group in layout.groups}
    collections.update({name: (name,) for name in layout.singles})
    return collections


def from_arrays(arrays: Mapping[str, ak.Array], layout: BranchLayout) -> RowBlock:
    """Rows from uproot's arrays of a layout's branches (absent branches are left out)."""
    flat = {name: _flat(arrays[name]) for name in layout.scalars if name in arrays}
    jagged = {}
    for name, members in collections_of(layout).items():
        present = [member for member in members if member in arrays]
        if not present:
            continue
        # members of one group share their counts (the counter branch): keep one offsets
        offsets, contents = None, {}
        for member in present:
            member_offsets, contents[member] = _list(arrays[member])
            offsets = member_offsets if offsets is None else offsets
        assert offsets is not None
        jagged[name] = Jagged(offsets, contents)
    length = len(next(iter(arrays.values()))) if arrays else 0
    return RowBlock(length, flat, jagged)


def _flat(array: ak.Array) -> np.ndarray:
    """One value per row (1-d), or a fixed-size array per row (2-d and more)."""
    import awkward as ak

    layout = ak.to_layout(array)
    if isinstance(layout, ak.contents.RegularArray):  # uproot's fixed-size arrays
        return np.asarray(ak.to_numpy(array, allow_missing=False))
    return np.asarray(layout.data)


def _list(array: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets from 0, content from the first row's first item): views, no copies."""
    import awkward as ak

    layout = ak.to_layout(array)
    if not isinstance(layout, ak.contents.ListOffsetArray):
        layout = layout.to_ListOffsetArray64(True)
    offsets = np.asarray(layout.offsets, dtype=np.int64)
    content = np.asarray(layout.content.data)[offsets[0] :]
    return (offsets - offsets[0] if offsets[0] else offsets), content


def to_arrays(block: RowBlock, layout: BranchLayout) -> dict[str, ak.Array | np.ndarray]:
    """Branches as uproot's `mktree` + `extend` want them: scalars as numpy, a counted group as
    one list of records (`outer` with fields `inner`, sharing one counter), a lone jagged branch
    as a list array. (The outputs are written by `io.ttree_writer`, which takes the numpy
    buffers themselves; this is for writing rows with uproot.)"""
    import awkward as ak

    arrays: dict[str, ak.Array | np.ndarray] = {name: block.flat[name] for name in layout.scalars}
    for group in layout.groups:
        collection = block.jagged[group.outer]
        record = ak.contents.RecordArray(
            [ak.contents.NumpyArray(_items(collection, m)) for m in group.members],
            [group.inner(m) for m in group.members],
            length=int(collection.offsets[-1]),
        )
        arrays[group.outer] = _lists(collection.offsets, record)
    for name in layout.singles:
        collection = block.jagged[name]
        arrays[name] = _list_array(collection, name)
    return arrays


def column_arrays(block: RowBlock) -> dict[str, ak.Array]:
    """Every column under its own name, as awkward arrays."""
    import awkward as ak

    arrays = {name: ak.Array(values) for name, values in block.flat.items()}
    for collection in block.jagged.values():
        for name in collection.contents:
            arrays[name] = _list_array(collection, name)
    return arrays


def _items(collection: Jagged, name: str) -> np.ndarray:
    return collection.contents[name][: collection.offsets[-1]]


def _list_array(collection: Jagged, name: str) -> ak.Array:
    import awkward as ak

    return _lists(collection.offsets, ak.contents.NumpyArray(_items(collection, name)))


def _lists(offsets: np.ndarray, content: ak.contents.Content) -> ak.Array:
    import awkward as ak

    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), content))
