"""Tests of shuffle.py: keyed bijections on [0, n) that any worker can evaluate alone."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from balanced_batches.shuffle import permute, stream_key, unpermute

KEYS = stream_key(12345, "DY_PU200", "jet_absetabin0_ptbin0")


def assert_bijection(positions: np.ndarray, n: int) -> None:
    assert positions.dtype == np.int64
    assert len(positions) == n
    assert np.array_equal(np.sort(positions), np.arange(n))


@pytest.mark.parametrize(
    "n", [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 63, 64, 65, 255, 256, 257, 1000, 4099]
)
def test_permute_is_a_bijection_and_unpermute_inverts_it(n: int) -> None:
    positions = permute(np.arange(n), n, KEYS)
    assert_bijection(positions, n)
    assert np.array_equal(unpermute(positions, n, KEYS), np.arange(n))
    assert np.array_equal(permute(unpermute(np.arange(n), n, KEYS), n, KEYS), np.arange(n))


def test_large_n_is_a_bijection() -> None:
    n = 1_000_003
    positions = permute(np.arange(n), n, KEYS)
    assert_bijection(positions, n)
    assert np.array_equal(unpermute(positions, n, KEYS), np.arange(n))


@given(
    n=st.integers(1, 20_000),
    seed=st.integers(0, 2**32 - 1),
    label=st.text(min_size=0, max_size=12),
)
@settings(max_examples=60, deadline=None)
def test_bijection_for_any_n_and_key(n: int, seed: int, label: str) -> None:
    keys = stream_key(seed, label, "region")
    positions = permute(np.arange(n), n, keys)
    assert_bijection(positions, n)
    assert np.array_equal(unpermute(positions, n, keys), np.arange(n))


@given(
    n=st.integers(2, 5000),
    seed=st.integers(0, 1000),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_a_subset_maps_like_the_whole_range(n: int, seed: int, data: st.DataObject) -> None:
    """A worker that maps only its file's candidates gets the same positions."""
    keys = stream_key(seed, "stream")
    whole = permute(np.arange(n), n, keys)
    start = data.draw(st.integers(0, n - 1))
    stop = data.draw(st.integers(start, n))
    assert np.array_equal(permute(np.arange(start, stop), n, keys), whole[start:stop])
    picks = np.array(data.draw(st.lists(st.integers(0, n - 1), max_size=50)), dtype=np.int64)
    assert np.array_equal(permute(picks, n, keys), whole[picks])
    inverse = unpermute(np.arange(n), n, keys)
    assert np.array_equal(unpermute(picks, n, keys), inverse[picks])


def test_empty_and_single_inputs() -> None:
    empty = np.array([], dtype=np.int64)
    for n in (0, 1, 2, 100):
        assert permute(empty, n, KEYS).tolist() == []
        assert unpermute(empty, n, KEYS).tolist() == []
    assert permute(np.array([0]), 1, KEYS).tolist() == [0]
    assert unpermute(np.array([0]), 1, KEYS).tolist() == [0]


def test_same_key_same_order() -> None:
    n = 10_000
    first = permute(np.arange(n), n, stream_key(7, "QCD_PU200", "jet_absetabin2_ptbin3"))
    again = permute(np.arange(n), n, stream_key(7, "QCD_PU200", "jet_absetabin2_ptbin3"))
    assert np.array_equal(first, again)


def test_stream_key_is_deterministic_and_depends_on_seed_and_labels() -> None:
    base = stream_key(7, "QCD_PU200", "jet_absetabin2_ptbin3")
    assert base.dtype == np.uint64
    assert np.array_equal(base, stream_key(7, "QCD_PU200", "jet_absetabin2_ptbin3"))
    others = [
        stream_key(8, "QCD_PU200", "jet_absetabin2_ptbin3"),
        stream_key(7, "QCD_PU140", "jet_absetabin2_ptbin3"),
        stream_key(7, "QCD_PU200", "jet_absetabin2_ptbin4"),
        stream_key(7, "QCD_PU200jet", "_absetabin2_ptbin3"),
        stream_key(7, "jet_absetabin2_ptbin3", "QCD_PU200"),
    ]
    for other in others:
        assert not np.array_equal(base, other)


def test_different_keys_give_different_orders() -> None:
    n = 1000
    orders = {
        tuple(permute(np.arange(n), n, stream_key(seed, "DY_NoPU", region)).tolist())
        for seed in (1, 2, 3)
        for region in ("a", "b", "c")
    }
    assert len(orders) == 9
    assert tuple(range(n)) not in orders


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_order_looks_uniform(seed: int) -> None:
    n = 200_000
    keys = stream_key(seed, "TT_PU200", "genuine_absetabin1_ptbin4")
    positions = permute(np.arange(n), n, keys).astype(np.float64)
    # the first half of the candidates spreads over the whole order: mean ~ n/2 (sd ~ 0.001 n)
    assert abs(positions[: n // 2].mean() - (n - 1) / 2) < 0.01 * n
    # and so does the first tenth, decile by decile (expected 2000 each, sd ~ 42)
    deciles = np.bincount((positions[: n // 10] * 10 // n).astype(int), minlength=10)
    assert np.all(np.abs(deciles - n // 100) < 0.1 * n // 100)
    # neighbours in a file land far apart: |pos(i+1) - pos(i)| averages n/3 for a random order
    assert abs(np.abs(np.diff(positions)).mean() - n / 3) < 0.02 * n
    # no visible correlation with the original index
    assert abs(np.corrcoef(np.arange(n), positions)[0, 1]) < 0.02
    # few fixed points (a random order has about one)
    assert np.count_nonzero(positions == np.arange(n)) < 10
