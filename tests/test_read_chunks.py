"""Read chunks end where every branch starts a basket, so that no basket is read twice."""

from __future__ import annotations

import itertools
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from balanced_batches.stages.read_units import chunk_bounds

BASKET = 100  # entries per `extend`: uproot writes one basket per branch per call


@pytest.fixture(scope="module")
def tree_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,050 entries in baskets of 100 (the last of 50), a scalar and a jagged branch."""
    path = tmp_path_factory.mktemp("chunks") / "baskets.root"
    rng = np.random.default_rng(3)
    with uproot.recreate(path) as output:
        output.mktree("taus", {"x": np.float32, "v": "var * float32"})
        for start in range(0, 1050, BASKET):
            n = min(BASKET, 1050 - start)
            counts = rng.integers(0, 4, n)
            values = ak.unflatten(rng.random(int(counts.sum())).astype(np.float32), counts)
            output["taus"].extend({"x": rng.random(n).astype(np.float32), "v": values})
    return path


@pytest.mark.parametrize("step", [30, 99, 100, 250, 1000, 5000])
def test_chunks_end_on_common_basket_boundaries(tree_path: Path, step: int) -> None:
    """Every bound is a basket boundary of every branch, chunks cover each entry once, and
    a chunk is as large as fits in the step (one basket when a basket is larger)."""
    with uproot.open(tree_path) as handle:
        tree = handle["taus"]
        common = {int(e) for e in tree.common_entry_offsets()}
        bounds = chunk_bounds(tree, ["x", "v"], tree.num_entries, step)
    assert bounds[0] == 0 and bounds[-1] == 1050
    assert set(bounds) <= common
    for start, stop in itertools.pairwise(bounds):
        assert start < stop <= start + max(step, BASKET)
        if stop < 1050:
            assert stop + BASKET > start + step  # the next basket would not fit


def test_chunks_are_plain_steps_when_baskets_are_far_larger(tmp_path: Path) -> None:
    """One basket of 1,050 entries: reading it whole for a step of 100 would hold ten times
    the memory asked for, so the chunks are plain steps (the basket is read again)."""
    path = tmp_path / "one-basket.root"
    with uproot.recreate(path) as output:
        output.mktree("taus", {"x": np.float32})
        output["taus"].extend({"x": np.arange(1050, dtype=np.float32)})
    with uproot.open(path) as handle:
        tree = handle["taus"]
        # the last chunk reaches the end of the basket: it is within 4 steps
        assert chunk_bounds(tree, ["x"], 1050, 100) == [*range(0, 800, 100), 1050]
        assert chunk_bounds(tree, ["x"], 1050, 300) == [0, 1050]  # within 4 steps: whole
