"""Tests of statistics.py: statistics merged over any partition of the rows equal those of the
whole, quantile estimates stay within the sketch's rank-error bound, partials round-trip
through JSON exactly, and the published form is the same for every branch."""

from __future__ import annotations

import functools
import itertools
import json
import math
import weakref
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from balanced_batches.rows import Jagged, RowBlock
from balanced_batches.statistics import (
    DatasetStatistics,
    QuantileSketch,
    block_statistics,
    branch_statistics,
    merge,
    merge_all,
    merge_branches,
    statistics_json,
)

TYPES = ("tau", "jet", "e")
SETTINGS = settings(max_examples=60, deadline=None)
QS = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
ELEMENT = st.one_of(
    st.floats(-1e6, 1e6),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1.0]),  # ties and left-out values
)


@st.composite
def blocks(draw: st.DrawFn) -> tuple[RowBlock, np.ndarray]:
    """A block with every kind of numeric branch, and a type per row."""
    n = draw(st.integers(0, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    counts = rng.integers(0, 5, n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    items = int(offsets[-1]) + 3  # contents run past the last row's items
    flat = {
        "x": draw(hnp.arrays(np.float64, n, elements=ELEMENT)),
        "charge": rng.integers(-2, 3, n).astype(np.int16),  # few distinct values
        "passed": rng.random(n) < 0.3,
        "p3": rng.normal(size=(n, 3)).astype(np.float32),  # fixed-size array per row
        "big": rng.integers(0, 2**62, n, dtype=np.uint64),
    }
    pf = {
        "pf_pt": rng.exponential(10.0, items).astype(np.float32),
        "pf_q": rng.integers(-1, 2, items).astype(np.int8),
    }
    return RowBlock(n, flat, {"pf": Jagged(offsets, pf)}), rng.integers(0, len(TYPES), n)


def elements(rows: RowBlock) -> dict[str, np.ndarray]:
    """Every branch's elements, finite or not (the reference)."""
    found = {name: values.reshape(-1) for name, values in rows.flat.items()}
    for collection in rows.jagged.values():
        for name, contents in collection.contents.items():
            found[name] = contents[: collection.offsets[-1]]
    return found


def partials(
    rows: RowBlock, types: np.ndarray, cuts: list[int], size: int
) -> list[DatasetStatistics]:
    """Statistics of the block cut into consecutive pieces at `cuts` (empty ones included)."""
    edges = [0, *sorted(min(c, rows.length) for c in cuts), rows.length]
    return [
        block_statistics(rows.take(np.arange(a, b)), types[a:b], TYPES, sketch_size=size)
        for a, b in itertools.pairwise(edges)
    ]


def assert_within_rank_error(values: np.ndarray, estimates: np.ndarray, error: float) -> None:
    """Each estimate lies between the exact order statistics `error` ranks either side of
    numpy's quantile position (the documented bound of `QuantileSketch`)."""
    ordered = np.sort(values)
    positions = np.asarray(QS) * (len(ordered) - 1)
    low = ordered[np.maximum(np.floor(positions - error).astype(int), 0)]
    high = ordered[np.minimum(np.ceil(positions + error).astype(int), len(ordered) - 1)]
    slack = 1e-12 * np.maximum(np.abs(low), np.abs(high))  # interpolation rounding
    assert np.all(low - slack <= estimates), (low, estimates)
    assert np.all(estimates <= high + slack), (estimates, high)


def assert_counts_within_rank_error(values: np.ndarray, sketch: QuantileSketch) -> None:
    """The sketch's invariant: its weights of points <= v (< v) are within `rank_error` of
    the number of elements <= v (< v), for every v. Both sides being step functions, checking
    at the sketch's points covers every v."""
    ordered = np.sort(values)
    at_most = np.cumsum(sketch.weights)
    below = at_most - sketch.weights
    assert np.all(
        np.abs(np.searchsorted(ordered, sketch.values, "right") - at_most) <= sketch.rank_error
    )
    assert np.all(
        np.abs(np.searchsorted(ordered, sketch.values, "left") - below) <= sketch.rank_error
    )


@SETTINGS
@given(
    block=blocks(),
    cuts=st.lists(st.integers(0, 300), max_size=6),
    size=st.sampled_from([4, 16, 2048]),
)
def test_merged_partials_equal_the_whole(
    block: tuple[RowBlock, np.ndarray], cuts: list[int], size: int
) -> None:
    rows, types = block
    parts = partials(rows, types, cuts, size)
    merged = merge_all(parts)
    whole = block_statistics(rows, types, TYPES, sketch_size=size)
    assert merged.rows == whole.rows == rows.length
    assert merged.types == whole.types
    assert list(merged.branches) == list(whole.branches)
    for name, values in elements(rows).items():
        got, expected = merged.branches[name], whole.branches[name]
        finite = values[np.isfinite(values)]
        wide = finite.astype(np.float64)  # what the sketch holds
        assert (got.count, got.nan, got.inf) == (expected.count, expected.nan, expected.inf)
        assert (got.count, got.nan) == (len(finite), np.count_nonzero(np.isnan(values)))
        assert (got.minimum, got.maximum) == (expected.minimum, expected.maximum)
        if not len(finite):
            assert got.minimum is None and got.count == 0
            continue
        assert got.minimum == finite.min() and got.maximum == finite.max()
        assert type(got.minimum) is (float if values.dtype.kind == "f" else int)
        scale = float(np.abs(wide).max())
        assert got.mean == pytest.approx(wide.mean(), rel=1e-9, abs=1e-12 * scale)
        std = math.sqrt(got.m2 / got.count)
        assert std == pytest.approx(wide.std(), rel=1e-7, abs=1e-9 * scale)
        # merge_all compresses once: at most N/K + (m + 1)/2 ranks (QuantileSketch)
        assert got.sketch.rank_error <= len(finite) / size + (len(parts) + 1) / 2
        assert len(got.sketch.values) <= size
        assert got.sketch.weights.sum() == len(finite)
        assert_counts_within_rank_error(wide, got.sketch)
        assert_within_rank_error(wide, got.sketch.quantiles(np.array(QS)), got.sketch.rank_error)


@SETTINGS
@given(block=blocks(), cuts=st.lists(st.integers(0, 300), max_size=6))
def test_pairwise_merges_keep_their_bound(
    block: tuple[RowBlock, np.ndarray], cuts: list[int]
) -> None:
    rows, types = block
    parts = partials(rows, types, cuts, size=8)
    merged = functools.reduce(merge, parts[1:], parts[0])
    for name, values in elements(rows).items():
        finite = values[np.isfinite(values)].astype(np.float64)
        sketch = merged.branches[name].sketch
        if len(finite):
            assert_counts_within_rank_error(finite, sketch)
            assert_within_rank_error(finite, sketch.quantiles(np.array(QS)), sketch.rank_error)


@SETTINGS
@given(block=blocks(), cuts=st.lists(st.integers(0, 300), max_size=4))
def test_partials_travel_as_json_exactly(
    block: tuple[RowBlock, np.ndarray], cuts: list[int]
) -> None:
    rows, types = block
    parts = partials(rows, types, cuts, size=16)
    travelled = [DatasetStatistics.from_json(json.loads(json.dumps(p.to_json()))) for p in parts]
    for part, back in zip(parts, travelled, strict=True):
        assert back.to_json() == part.to_json()
    assert merge_all(travelled).to_json() == merge_all(parts).to_json()


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        hnp.arrays(np.int64, st.integers(0, 60), elements=st.integers(0, 30)),
        min_size=1,
        max_size=4,
    ),
    size=st.integers(2, 9),
)
def test_tiny_sketches_of_many_ties_keep_their_bound(parts: list[np.ndarray], size: int) -> None:
    # the bound is tight here: sketches of few points over many tied values reach it
    merged = merge_branches([branch_statistics(part, size) for part in parts])
    if merged.count:
        assert_counts_within_rank_error(np.concatenate(parts), merged.sketch)


def test_quantiles_are_numpys_while_few_distinct_values() -> None:
    rng = np.random.default_rng(5)
    values = np.round(rng.normal(size=50_000), 1)  # ~90 distinct values, many ties
    rows = RowBlock(len(values), {"v": values})
    stats = block_statistics(rows, np.zeros(len(values), np.int64), ["all"])
    sketch = stats.branches["v"].sketch
    assert sketch.rank_error == 0 and len(sketch.values) < 100
    np.testing.assert_allclose(sketch.quantiles(np.array(QS)), np.quantile(values, QS))


def test_a_large_block_is_within_its_bound() -> None:
    values = np.random.default_rng(6).standard_cauchy(1_000_003)
    rows = RowBlock(len(values), {"v": values})
    sketch = block_statistics(rows, np.zeros(len(values), np.int64), ["all"]).branches["v"].sketch
    assert sketch.rank_error == math.ceil(len(values) / 2048) / 2
    assert_counts_within_rank_error(values, sketch)
    assert_within_rank_error(values, sketch.quantiles(np.array(QS)), sketch.rank_error)


def test_jagged_branches_count_items_and_arrays_count_values() -> None:
    offsets = np.array([0, 0, 3, 4])
    pt = np.array([1.0, 2.0, 3.0, 10.0, np.nan, 99.0])  # the last two lie past the rows
    rows = RowBlock(3, {"p3": np.arange(9, dtype=np.int32).reshape(3, 3)})
    rows = RowBlock(3, rows.flat, {"pf": Jagged(offsets, {"pf_pt": pt})})
    stats = statistics_json(block_statistics(rows, np.zeros(3, np.int64), ["all"]))
    pf, p3 = stats["branches"]["pf_pt"], stats["branches"]["p3"]
    assert (pf["count"], pf["nan"], pf["mean"], pf["max"]) == (4, 0, 4.0, 10.0)
    assert (p3["count"], p3["min"], p3["max"], p3["mean"]) == (9, 0, 8, 4.0)
    assert type(p3["min"]) is int and type(p3["mean"]) is float


def test_empty_blocks() -> None:
    rows = RowBlock(0, {"x": np.empty(0, np.float32)}, {"pf": Jagged(np.zeros(1, np.int64), {})})
    empty = block_statistics(rows, np.empty(0, np.int64), TYPES)
    published = statistics_json(empty)
    assert published["rows"] == 0 and published["types"] == dict.fromkeys(TYPES, 0)
    assert published["branches"]["x"]["count"] == 0 and published["branches"]["x"]["mean"] is None
    full = block_statistics(RowBlock(2, {"x": np.array([1.0, 3.0])}), np.array([0, 2]), TYPES)
    assert merge(empty, full).to_json() == merge(full, empty).to_json() == full.to_json()
    assert merge_all([]).to_json() == {"rows": 0, "types": {}, "branches": {}}


def test_a_branch_without_finite_values_gets_nulls() -> None:
    values = np.array([np.nan, np.inf, np.nan, -np.inf, np.nan], dtype=np.float32)
    stats = block_statistics(RowBlock(5, {"x": values}), np.zeros(5, np.int64), ["all"])
    published = statistics_json(stats)
    json.dumps(published, allow_nan=False)  # only JSON-safe values
    assert published["branches"]["x"] == {
        "count": 0,
        "nan": 3,
        "inf": 2,
        "mean": None,
        "std": None,
        "min": None,
        "max": None,
        "quantiles": {key: None for key in ("0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99")},
    }


def test_every_branch_publishes_the_same_keys() -> None:
    rows = RowBlock(
        4,
        {
            "passed": np.array([True, False, True, True]),
            "n": np.array([3, 1, 4, 1], dtype=np.uint8),
            "nothing": np.full(4, np.nan),
            "label": np.array(["a", "b", "c", "d"]),  # not a number: left out
        },
    )
    published = statistics_json(
        block_statistics(rows, np.zeros(4, np.int64), ["all"], skip={"n"}), quantiles=(0.5, 1)
    )
    json.dumps(published, allow_nan=False)
    branches = published["branches"]
    assert list(branches) == ["passed", "nothing"]
    assert len({tuple(b) for b in branches.values()}) == 1
    assert len({tuple(b["quantiles"]) for b in branches.values()}) == 1
    passed = branches["passed"]  # booleans count as 0 and 1
    assert (passed["mean"], passed["min"], passed["max"]) == (0.75, 0, 1)
    assert passed["std"] == pytest.approx(math.sqrt(0.75 * 0.25))
    assert passed["quantiles"] == {"0.5": 1.0, "1.0": 1.0}


def test_types_are_counted_and_merged() -> None:
    first = block_statistics(RowBlock(4), np.array([0, 2, 2, 0]), TYPES)
    second = block_statistics(RowBlock(3), np.array([1, 2, 2]), TYPES)
    assert first.types == {"tau": 2, "jet": 0, "e": 2}
    merged = merge_all([first, second])
    assert (merged.rows, merged.types) == (7, {"tau": 2, "jet": 1, "e": 4})


@pytest.mark.parametrize(
    "type_index", [np.array([0, 3]), np.array([-1, 0]), np.array([0]), np.array([0.0, 1.0])]
)
def test_types_must_be_integers_naming_a_type(type_index: np.ndarray) -> None:
    with pytest.raises(ValueError, match="type_index"):
        block_statistics(RowBlock(2), type_index, TYPES)


def test_quantiles_must_be_fractions() -> None:
    with pytest.raises(ValueError, match="quantiles"):
        statistics_json(merge_all([]), quantiles=(0.5, 50))


def test_a_sampled_sketch_has_exact_moments_and_close_quantiles() -> None:
    """With `sample`, moments and extremes stay exact; quantiles come from a strided sample,
    within a few standard deviations of their sampling error."""
    rng = np.random.default_rng(5)
    values = rng.standard_cauchy(1_000_000).astype(np.float32)
    whole = branch_statistics(values, 1024)
    sampled = branch_statistics(values, 1024, sample=16_384)
    assert sampled.count == whole.count and sampled.minimum == whole.minimum
    assert sampled.maximum == whole.maximum
    assert sampled.mean == pytest.approx(whole.mean, rel=1e-9)
    assert sampled.m2 == pytest.approx(whole.m2, rel=1e-9)
    assert int(sampled.sketch.weights.sum()) == len(values)
    ordered = np.sort(values.astype(np.float64))
    qs = np.array([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
    ranks = np.searchsorted(ordered, sampled.sketch.quantiles(qs))
    sigma = np.sqrt(len(values) * qs * (1 - qs) * len(values) / 16_384)
    assert np.all(np.abs(ranks - qs * (len(values) - 1)) <= 5 * sigma + sampled.sketch.rank_error)


def test_many_partials_are_merged_a_few_at_a_time_within_their_bound() -> None:
    """More partials than `fan_in` are read one at a time and merged in levels: no more
    than fan_in - 1 of them per level are alive at once, counts and moments stay exact, and
    every sketch keeps its rank-error bound."""
    rng = np.random.default_rng(7)
    rows = RowBlock(
        3000, {"x": rng.normal(size=3000), "k": rng.integers(0, 50, 3000).astype(np.int32)}
    )
    types = rng.integers(0, len(TYPES), 3000)
    alive: set[int] = set()
    most_alive = 0

    def one_at_a_time() -> Iterator[DatasetStatistics]:  # 300 partials, made when asked for
        nonlocal most_alive
        for start in range(0, 3000, 10):
            part = block_statistics(
                rows.take(np.arange(start, start + 10)),
                types[start : start + 10],
                TYPES,
                sketch_size=16,
            )
            alive.add(start)
            weakref.finalize(part, alive.discard, start)
            most_alive = max(most_alive, len(alive))
            yield part
            del part

    merged = merge_all(one_at_a_time(), fan_in=4)
    assert most_alive <= 3 * 5  # fan_in - 1 per level, log4(300) < 5 levels
    whole = block_statistics(rows, types, TYPES, sketch_size=16)
    assert merged.rows == 3000 and merged.types == whole.types
    for name, values in elements(rows).items():
        got = merged.branches[name]
        assert (got.count, got.minimum, got.maximum) == (3000, values.min(), values.max())
        assert got.mean == pytest.approx(values.mean(), rel=1e-9)
        assert got.m2 == pytest.approx(whole.branches[name].m2, rel=1e-9)
        assert got.sketch.weights.sum() == 3000 and len(got.sketch.values) <= 16
        assert_counts_within_rank_error(values.astype(np.float64), got.sketch)
        assert_within_rank_error(values, got.sketch.quantiles(np.array(QS)), got.sketch.rank_error)
    with pytest.raises(ValueError, match="fan_in"):
        merge_all([], fan_in=1)
