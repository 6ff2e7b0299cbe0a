"""Tests of rows.py and shards.py: numpy row blocks agree with awkward, and parts round-trip."""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections import Counter
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from balanced_batches.errors import BalancedBatchesError, InputFileError
from balanced_batches.rows import (
    BranchGroup,
    BranchLayout,
    Jagged,
    RowBlock,
    column_arrays,
    concatenate,
    from_arrays,
    layout_from_json,
    layout_to_json,
    select_branches,
    take_from,
    to_arrays,
)
from balanced_batches.shards import (
    ROW_COLUMN,
    Part,
    Pieces,
    all_parts,
    complete_parts,
    is_complete,
    part_path,
    parts_of_read_unit,
    remove_part_temporaries,
    remove_parts_of_read_unit,
    write_part,
)
from balanced_batches.stages.units import merge_layout

FLAT = {"run": np.int32, "event": np.int64, "weight": np.float32, "passed": np.bool_}
FIXED = {"p3": (3,), "cov": (2, 2)}  # flat columns holding a fixed-size array per row
FLAT |= {"p3": np.float32, "cov": np.int16}
JAGGED = {  # the group "pf" (members pf_<inner> share counts) and one lone jagged branch
    "pf": {"pf_pt": np.float32, "pf_charge": np.int32, "pf_good": np.bool_},
    "trk_z": {"trk_z": np.float64},
}
DTYPES = {**FLAT, **{c: d for columns in JAGGED.values() for c, d in columns.items()}}
LAYOUT = BranchLayout(
    scalars=tuple(FLAT),
    groups=(BranchGroup("pf", "npf", tuple(JAGGED["pf"])),),
    singles=("trk_z",),
    counters=("npf",),
)
SETTINGS = settings(max_examples=50, deadline=None)


def values(
    rng: np.random.Generator, dtype: type, size: int, shape: tuple[int, ...] = ()
) -> np.ndarray:
    if dtype is np.bool_:
        return rng.random((size, *shape)) < 0.5
    return (rng.normal(size=(size, *shape)) * 100).astype(dtype)


@st.composite
def blocks(draw: st.DrawFn, max_rows: int = 10, padded: bool = True) -> RowBlock:
    """Random rows; jagged contents may run past offsets[-1] when `padded`."""
    n = draw(st.integers(0, max_rows))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    flat = {name: values(rng, dtype, n, FIXED.get(name, ())) for name, dtype in FLAT.items()}
    jagged = {}
    # as std::vector branches of one object: equal sizes, each collection its own offsets
    equal_sizes = draw(st.booleans())
    counts: list[int] | None = None
    for name, columns in JAGGED.items():
        if counts is None or not equal_sizes:
            counts = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        size = int(offsets[-1]) + (draw(st.integers(0, 3)) if padded else 0)
        jagged[name] = Jagged(offsets, {c: values(rng, d, size) for c, d in columns.items()})
    return RowBlock(n, flat, jagged)


def indices(length: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, length - 1), max_size=25) if length else st.just([])


def reference(block: RowBlock) -> dict[str, ak.Array]:
    """Every column as awkward, built with ak.unflatten, not with the module's converters."""
    assert set(block.flat) | {c for j in block.jagged.values() for c in j.contents} == set(DTYPES)
    arrays = {}
    for name, column in block.flat.items():
        assert len(column) == block.length and column.dtype == DTYPES[name]
        assert column.shape[1:] == FIXED.get(name, ())
        arrays[name] = ak.from_numpy(column, regulararray=True)  # as uproot reads `x[3]/F`
    for collection in block.jagged.values():
        offsets = collection.offsets
        assert offsets.dtype == np.int64 and len(offsets) == block.length + 1 and offsets[0] == 0
        for name, content in collection.contents.items():
            assert content.dtype == DTYPES[name] and len(content) >= offsets[-1]
            arrays[name] = ak.unflatten(content[: offsets[-1]], np.diff(offsets))
    return arrays


def assert_equal(block: RowBlock, expected: dict[str, ak.Array]) -> None:
    got = reference(block)
    assert got.keys() == expected.keys()
    for name, array in expected.items():
        assert len(got[name]) == block.length == len(array)
        assert ak.to_list(got[name]) == ak.to_list(array), name


@given(block=blocks(), data=st.data())
@SETTINGS
def test_take_selects_like_awkward(block: RowBlock, data: st.DataObject) -> None:
    """Rows in any order, with repeats, are those awkward picks with the same index."""
    index = np.array(data.draw(indices(block.length)), dtype=np.int64)
    taken = block.take(index)
    assert_equal(taken, {name: a[index] for name, a in reference(block).items()})
    for collection in taken.jagged.values():  # packed: no item beyond the last row
        assert all(len(c) == collection.offsets[-1] for c in collection.contents.values())
    assert taken.nbytes == sum(c.nbytes for c in taken.flat.values()) + sum(
        j.offsets.nbytes + sum(c.nbytes for c in j.contents.values()) for j in taken.jagged.values()
    )


def test_with_flat_adds_columns_and_keeps_rows() -> None:
    """with_flat adds columns, overrides same names and leaves the original alone."""
    block = RowBlock(2, {"a": np.array([1, 2])}, {})
    more = block.with_flat({"b": np.array([3.0, 4.0]), "a": np.array([5, 6])})
    assert more.length == 2 and more.flat["b"].tolist() == [3.0, 4.0]
    assert more.column("a").tolist() == [5, 6] and block.flat.keys() == {"a"}


@given(a=blocks(), b=blocks(), c=blocks())
@SETTINGS
def test_concatenate_matches_awkward(a: RowBlock, b: RowBlock, c: RowBlock) -> None:
    """Concatenated blocks (contents past offsets[-1] included) equal ak.concatenate."""
    parts = [reference(x) for x in (a, b, c)]
    expected = {name: ak.concatenate([p[name] for p in parts]) for name in DTYPES}
    joined = concatenate([a, b, c])
    assert joined.length == a.length + b.length + c.length
    assert_equal(joined, expected)
    assert concatenate([a]) is a


@given(sources=st.lists(blocks(), min_size=1, max_size=4), data=st.data())
@SETTINGS
def test_take_from_equals_a_take_from_the_concatenation(
    sources: list[RowBlock], data: st.DataObject
) -> None:
    """Rows of several blocks in any order, with repeats, copied once: what concatenating
    the blocks and taking the same rows gives, packed; each block giving rows is reported
    done once; equal-sized std::vector collections share their result's offsets."""
    joined = concatenate(sources)
    index = np.array(data.draw(indices(joined.length)), dtype=np.int64)
    starts = np.cumsum([0] + [block.length for block in sources])
    which = np.searchsorted(starts, index, side="right") - 1
    copied: list[int] = []
    taken = take_from(sources, which, index - starts[which] if len(index) else index, copied.append)
    assert taken.length == len(index)
    assert sorted(copied) == sorted(set(which.tolist()))  # once per block giving rows
    assert_equal(taken, reference(joined.take(index)))
    for collection in taken.jagged.values():
        assert all(len(c) == collection.offsets[-1] for c in collection.contents.values())
    if all(np.array_equal(*(b.jagged[name].offsets for name in JAGGED)) for b in sources):
        first, second = (taken.jagged[name].offsets for name in JAGGED)
        assert first is second


def uproot_like(full: dict[str, ak.Array], start: int, stop: int, carry: bool) -> dict:
    """Arrays as uproot gives them for entries [start, stop): views into whole baskets."""
    if carry:  # a ListArray (starts/stops), as a fancy index leaves it
        return {name: array[np.arange(start, stop)] for name, array in full.items()}
    return {name: array[start:stop] for name, array in full.items()}


@given(block=blocks(max_rows=12, padded=False), data=st.data())
@SETTINGS
def test_from_arrays_and_back_round_trip(block: RowBlock, data: st.DataObject) -> None:
    """Sliced uproot-like arrays (offsets not from 0) come back value for value."""
    full = reference(block)
    start = data.draw(st.integers(0, block.length))
    stop = data.draw(st.integers(start, block.length))
    carry = data.draw(st.booleans())
    arrays = uproot_like(full, start, stop, carry)
    if not carry:
        layout = ak.to_layout(arrays["pf_pt"])
        assert isinstance(layout, ak.contents.ListOffsetArray)
        assert layout.offsets[0] == block.jagged["pf"].offsets[start]
    rows = from_arrays(arrays, LAYOUT)
    assert rows.length == stop - start
    assert rows.jagged.keys() == {"pf", "trk_z"} and rows.jagged["pf"].contents.keys() == {
        "pf_pt",
        "pf_charge",
        "pf_good",
    }
    expected = {name: ak.to_list(a) for name, a in arrays.items()}
    assert {n: ak.to_list(a) for n, a in reference(rows).items()} == expected
    assert {n: ak.to_list(a) for n, a in column_arrays(rows).items()} == expected
    written = to_arrays(rows, LAYOUT)
    assert written.keys() == {*FLAT, "pf", "trk_z"}
    for name in FLAT:
        assert isinstance(written[name], np.ndarray)
        assert written[name].shape[1:] == FIXED.get(name, ())
        assert written[name].tolist() == expected[name]
    assert ak.fields(written["pf"]) == ["pt", "charge", "good"]
    zipped = ak.zip(
        {"pt": arrays["pf_pt"], "charge": arrays["pf_charge"], "good": arrays["pf_good"]}
    )
    assert ak.to_list(written["pf"]) == ak.to_list(zipped)
    assert ak.to_list(written["trk_z"]) == expected["trk_z"]


def test_from_arrays_leaves_out_absent_branches() -> None:
    """Branches missing from the arrays are missing from the block, not an error."""
    arrays = {"run": ak.Array(np.array([1, 2], dtype=np.int32)), "pf_pt": ak.Array([[1.5], []])}
    rows = from_arrays(arrays, LAYOUT)
    assert rows.length == 2 and rows.flat.keys() == {"run"} and rows.jagged.keys() == {"pf"}
    assert rows.jagged["pf"].contents.keys() == {"pf_pt"}
    assert rows.jagged["pf"].offsets.tolist() == [0, 1, 1]


def uses_of(rows: int, units: list[int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A uses table of `len(units)` uses of `rows` candidates, sorted by write unit (column
    "unit"), and the unit starts; every candidate is used at least once when there are uses."""
    rng = np.random.default_rng(len(units))
    row = np.concatenate([np.arange(rows), rng.integers(0, max(rows, 1), len(units))])
    row = row[: len(units)] if rows else np.zeros(0, np.int64)
    unit = np.array(units, dtype=np.int64)
    order = np.argsort(unit, kind="stable")
    starts = np.searchsorted(unit[order], np.arange(4)).astype(np.int64)
    return {ROW_COLUMN: row[order].astype(np.int64), "unit": unit[order]}, starts


@given(first=blocks(), second=blocks(), data=st.data())
@SETTINGS
def test_parts_round_trip(first: RowBlock, second: RowBlock, data: st.DataObject) -> None:
    """Written parts give back their rows, each unit's uses, and any rows asked for."""
    sources = []
    for block in (first, second):
        n_uses = data.draw(st.integers(block.length, 3 * block.length))
        units = data.draw(st.lists(st.integers(0, 2), min_size=n_uses, max_size=n_uses))
        sources.append((block, *uses_of(block.length, units)))
    with tempfile.TemporaryDirectory() as scratch:
        paths = [part_path(Path(scratch), k, 0) for k in range(2)]
        for path, (rows, uses, starts) in zip(paths, sources, strict=True):
            write_part(path, rows, uses, starts)
        with Part(paths[0]) as p0, Part(paths[1]) as p1:
            parts = [p0, p1]
            for part, (rows, uses, starts) in zip(parts, sources, strict=True):
                assert part.length == rows.length and part.n_units == 3
                for u in range(3):
                    start, stop = part.unit_range(u)
                    assert (start, stop) == (starts[u], starts[u + 1])
                    table = part.uses(start, stop)
                    assert table["unit"].tolist() == [u] * (stop - start)
                    assert table[ROW_COLUMN].tolist() == uses[ROW_COLUMN][start:stop].tolist()
                for name, column in rows.flat.items():
                    assert np.array_equal(part.column(name, 0, rows.length), column)
            pieces = []
            for _ in range(data.draw(st.integers(1, 4))):
                k = data.draw(st.integers(0, 1))
                wanted = data.draw(st.sets(st.integers(0, max(parts[k].length - 1, 0))))
                rows_wanted = np.array(sorted(wanted), dtype=np.int64)
                if parts[k].length == 0:
                    rows_wanted = rows_wanted[:0]
                pieces.append((parts[k], rows_wanted))
            expected = concatenate(
                [sources[parts.index(part)][0].take(rows) for part, rows in pieces]
            )
            gathered = Pieces(pieces)
            assert gathered.length == expected.length
            for name in FLAT:  # a flat column of every piece's rows, pieces in order
                assert np.array_equal(gathered.column(name), expected.flat[name])
            order = np.array(data.draw(indices(expected.length)), dtype=np.int64)
            assert_equal(gathered.take(order), reference(expected.take(order)))


def test_incomplete_parts_are_rejected_and_removed(tmp_path: Path) -> None:
    """Short, long, empty and foreign files are not parts; removal stays within a read unit."""
    block = RowBlock(
        3, {"x": np.arange(3)}, {"j": Jagged(np.array([0, 1, 1, 3]), {"j": np.ones(4)})}
    )
    good = part_path(tmp_path, 0, 0)
    write_part(good, block, {ROW_COLUMN: np.arange(3)}, np.array([0, 3]))
    data = good.read_bytes()
    bad = {
        part_path(tmp_path, 1, 0): data[:-1],
        part_path(tmp_path, 1, 1): data + b"\0",
        part_path(tmp_path, 2, 0): b"",
        part_path(tmp_path, 2, 1): b"NOTAPART" + data[8:],
        part_path(tmp_path, 2, 2): data[:20],
    }
    for path, content in bad.items():
        path.write_bytes(content)
        with pytest.raises(BalancedBatchesError):
            Part(path)
        assert not is_complete(path)
    for part in (0, 1):
        part_path(tmp_path, 3, part).write_bytes(data)
    assert is_complete(good) and not is_complete(part_path(tmp_path, 9, 0))
    assert complete_parts(tmp_path) == Counter({0: 1, 3: 2})
    assert len(all_parts(tmp_path)) == 8
    assert parts_of_read_unit(tmp_path, 1) == sorted(p for p in bad if p.name.startswith("r000001"))
    leftovers = [good.parent / f".{part_path(tmp_path, r, 5).name}.part123" for r in (1, 3)]
    for leftover, r in zip(leftovers, (1, 3), strict=True):
        leftover.mkdir()  # as an interrupted `atomic_path` leaves it
        (leftover / part_path(tmp_path, r, 5).name).write_bytes(b"x")
    remove_parts_of_read_unit(tmp_path, 1)
    remove_parts_of_read_unit(tmp_path / "elsewhere", 1)  # nothing there: no error
    assert parts_of_read_unit(tmp_path, 1) == [] and len(all_parts(tmp_path)) == 6
    assert complete_parts(tmp_path) == Counter({0: 1, 3: 2})
    assert remove_part_temporaries(tmp_path) == 2
    assert not any(leftover.exists() for leftover in leftovers)
    assert len(all_parts(tmp_path)) == 6
    with Part(part_path(tmp_path, 3, 1)) as part:
        assert part.unit_range(0) == (0, 3) and part.column("x", 1, 3).tolist() == [1, 2]
        every = Pieces([(part, np.arange(3))]).take(np.arange(3))
        assert every.jagged["j"].offsets.tolist() == [0, 1, 1, 3]
        some = Pieces([(part, np.array([0, 2]))]).take(np.array([1, 0]))
        assert some.jagged["j"].offsets.tolist() == [0, 2, 3]


TYPES = {
    "run": "int32_t",
    "p3": "float[3]",
    "cov": "int16_t[2][2]",
    "npf": "int32_t",
    "pf_pt": "float[npf]",
    "trk_z": "std::vector<long>",
}
TYPED = BranchLayout(
    scalars=("run", "p3", "cov"),
    groups=(BranchGroup("pf", "npf", ("pf_pt",)),),
    singles=("trk_z",),
    counters=("npf",),
    vectors=("trk_z",),
    types=tuple(TYPES.items()),
)


def test_layouts_keep_branch_types_through_json_and_selection() -> None:
    """Types survive JSON and branch selection; layouts stored before types (and vectors)
    still load, knowing no element spelling."""
    assert layout_from_json(layout_to_json(TYPED)) == TYPED
    assert TYPED.vector_element("trk_z") == "long" and TYPED.vector_element("p3") is None
    old = layout_to_json(TYPED)
    del old["types"], old["vectors"]
    assert layout_from_json(old) == BranchLayout(
        ("run", "p3", "cov"), TYPED.groups, ("trk_z",), ("npf",)
    )
    assert layout_from_json(old).vector_element("trk_z") is None
    kept = select_branches(TYPED, None, ["pf_*", "cov"])
    assert kept.types == (("run", "int32_t"), ("p3", "float[3]"), ("trk_z", "std::vector<long>"))


def changed(**types: str) -> BranchLayout:
    """TYPED with some branches of other types (a counted `trk_z` in its own group)."""
    merged = TYPES | types
    layout = TYPED
    if merged["trk_z"].endswith("[ntrk]"):
        group = BranchGroup("trk", "ntrk", ("trk_z",))
        layout = BranchLayout(TYPED.scalars, (*TYPED.groups, group), (), ("npf", "ntrk"))
        merged["ntrk"] = "int32_t"
    return dataclasses.replace(layout, types=tuple(merged.items()))


@pytest.mark.parametrize(
    ("types", "message"),
    [
        ({"trk_z": "float[3]"}, "branch 'trk_z' is float[3] here but std::vector<long>"),
        ({"trk_z": "std::vector<Long64_t>"}, "branch 'trk_z' is std::vector<Long64_t> here but"),
        ({"trk_z": "long[ntrk]"}, "branch 'trk_z' is long[ntrk] here but std::vector<long>"),
        ({"p3": "float[4]"}, "branch 'p3' is float[4] here but float[3] in the other input"),
        ({"run": "int64_t"}, "branch 'run' is int64_t here but int32_t in the other input files"),
        ({"npf": "int16_t"}, "branch 'npf' is int16_t here but int32_t in the other input files"),
    ],
)
def test_an_input_of_other_branch_types_is_refused_naming_file_branch_and_types(
    types: dict[str, str], message: str
) -> None:
    """Every input must have the known layout's branches with the same types."""
    assert merge_layout(None, TYPED, "a.root") == TYPED
    assert merge_layout(TYPED, TYPED, "b.root") == TYPED
    with pytest.raises(InputFileError, match=re.escape(f"b.root: {message}")) as raised:
        merge_layout(TYPED, changed(**types), "b.root")
    assert "\n" not in str(raised.value)


def test_a_layout_stored_before_types_compares_kinds_and_takes_the_types() -> None:
    """Against a stored layout without types, only what it tells (kinds of branch, counters)
    is compared, and the layout with types replaces it."""
    untyped = dataclasses.replace(TYPED, types=())
    assert merge_layout(untyped, TYPED, "b.root") == TYPED
    assert merge_layout(TYPED, untyped, "b.root") == TYPED
    assert merge_layout(untyped, changed(p3="float[4]"), "b.root").types  # shapes: unknown
    with pytest.raises(InputFileError, match=r"b\.root: branch 'trk_z' is a counted array"):
        merge_layout(untyped, changed(trk_z="long[ntrk]"), "b.root")
    fewer = BranchLayout(("run",), TYPED.groups, ("trk_z",), ("npf",))
    with pytest.raises(InputFileError, match=r"branches differ .*\['cov', 'p3'\]"):
        merge_layout(TYPED, fewer, "b.root")
