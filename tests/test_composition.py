"""Composition (composition.py): exact per-batch counts from ratios and target spectra, plans
that take them, and a production whose batches hold them."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from balanced_batches.composition import (
    ALL_THERE_IS,
    Composition,
    StreamGroups,
    fill_all_there_is,
    largest_remainder,
    per_batch_counts,
)
from balanced_batches.config import CompositionConfig, ProjectConfig
from balanced_batches.plan_model import Plan
from conftest import PILEUP, cli, count_args, read_output
from test_plan import SPACE, make_config, make_table, stream_uses

CELLS = SPACE.n_abseta * SPACE.n_pt


@given(
    hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(0, 1000)),
    st.integers(0, 10_000),
)
@settings(max_examples=200, deadline=None)
def test_largest_remainder_is_exact_and_never_off_by_more_than_one(
    weights: np.ndarray, total: int
) -> None:
    if weights.sum() <= 0:
        weights = np.ones_like(weights)
    shares = total * weights / weights.sum()
    counts = largest_remainder(shares, total)
    assert int(counts.sum()) == total
    assert np.all(counts >= np.floor(shares) - 1e-9)
    assert np.all(counts <= np.floor(shares) + 1)
    # the ones left go to the largest remainders
    remainders = shares - np.floor(shares)
    got = counts > np.floor(shares) + 1e-9
    if got.any() and (~got).any():
        assert remainders[got].min() >= remainders[~got].max() - 1e-9


@st.composite
def groups(draw: st.DrawFn) -> tuple[StreamGroups, int]:
    n = draw(st.integers(1, 40))
    key = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 2)))
    type_index = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1)))
    cell = draw(hnp.arrays(np.int64, n, elements=st.integers(0, CELLS - 1)))
    return (
        StreamGroups(key, type_index, cell, ["P", "Q", "R"], SPACE.type_names),
        draw(st.integers(1, 20)),
    )


@given(
    groups(),
    st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    st.sampled_from([1.0, 0.25, 4.0]),
    st.booleans(),
    hnp.arrays(np.int64, (2, CELLS), elements=st.integers(0, 50)),
)
@settings(max_examples=150, deadline=None)
def test_each_group_takes_its_ratio_spread_over_its_spectrum(
    case: tuple[StreamGroups, int],
    type_ratio: float,
    process_ratio: float,
    flat: bool,
    spectrum: np.ndarray,
) -> None:
    streams, n = case
    composition = Composition({"a": type_ratio}, {"Q": process_ratio}, "flat")
    reference = None if flat else spectrum
    counts = per_batch_counts(streams, reference, n, composition)
    group_of = streams.key * 2 + streams.type
    for group in np.unique(group_of):
        members = group_of == group
        key, type_index = divmod(int(group), 2)
        ratio = (type_ratio if type_index == 0 else 1.0) * (process_ratio if key == 1 else 1.0)
        wanted = int(np.floor(n * members.sum() * ratio + 0.5))
        weights = np.ones(members.sum()) if flat else spectrum[type_index, streams.cell[members]]
        if weights.sum() == 0:
            assert not counts[members].any()
            continue
        assert int(counts[members].sum()) == wanted
        shares = wanted * weights / weights.sum()
        assert np.all(np.abs(counts[members] - shares) < 1)
        if flat and ratio == 1:
            assert np.all(counts[members] == n)  # the original rule


def test_all_there_is_takes_every_candidate_at_most_once() -> None:
    streams = StreamGroups(
        np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([0, 0, 3]), ["P", "Q"], SPACE.type_names
    )
    composition = Composition({"b": -1}, {}, "flat")
    counts = per_batch_counts(streams, None, 5, composition)
    assert counts.tolist() == [5, ALL_THERE_IS, ALL_THERE_IS]
    assert fill_all_there_is(counts, np.array([100, 23, 7]), 4).tolist() == [5, 5, 1]


def plan_with(
    composition: dict[str, Any], batches: int | None = None, max_reuse: int | None = None
) -> Plan:
    from balanced_batches.stages.plan import build_plan

    counts = np.zeros((3, SPACE.n_regions), dtype=np.int64)
    counts[0, [0, 1, 2, 9, 10]] = [400, 30, 7, 90, 3]
    counts[1, [0, 4, 9, 13]] = [50, 500, 60, 5]
    counts[2, [0, 9]] = [80, 200]
    active = np.array([[True, True], [True, True], [True, False]])
    table = make_table(np.array([0, 1, 0]), counts, active, np.array([1, 2, 3]))
    table = replace(table, keys=("P_PU200", "Q_PU200", "R_PU200"))  # keys of processes P, Q, R
    config = make_config(4, batches=batches, max_reuse=max_reuse)
    data = config.model_dump()
    data["plan"]["composition"] = composition
    return build_plan(table, ProjectConfig.model_validate(data), 100.0)


@pytest.mark.parametrize(
    "composition",
    [
        {"types": {"a": 2}},
        {"types": {"b": -1}},
        {"processes": {"Q": 3}, "spectrum": "type:a"},
        {"spectrum": "process:P"},
    ],
)
def test_plans_take_what_the_composition_asks_with_the_fewest_duplicates(
    composition: dict[str, Any],
) -> None:
    plan = plan_with(composition, batches=6)
    assert np.any(plan.takes != plan.per_batch)
    for stream in range(plan.n_streams):
        uses = stream_uses(plan, stream)
        k, total = int(plan.takes[stream]), int(plan.stream_total[stream])
        needed = plan.n_batches * k
        assert np.array_equal(np.sort(uses.position), np.arange(needed))  # k in every batch
        used = np.bincount(uses.candidate, minlength=total)
        # no candidate used k+1 times while another of its region is used fewer than k
        assert used.max() - used.min() <= 1
        assert used.min() == needed // total
    again = Plan.from_arrays(*plan.to_arrays())
    assert np.array_equal(again.takes, plan.takes)


def test_the_original_composition_keeps_the_plans_identity() -> None:
    plain = plan_with({})
    assert "stream_per_batch" not in plain.to_arrays()[1]
    assert np.all(plain.takes == plain.per_batch)


@pytest.mark.parametrize(
    ("composition", "message"),
    [
        ({"types": {"a": 0}}, "must be positive, or -1"),
        ({"spectrum": "shape:a"}, "flat, type:NAME or process:NAME"),
        ({"types": {"zz": 2}}, "plan.composition.types' = 'zz': unknown"),
        ({"spectrum": "process:Nope"}, "plan.composition.spectrum' = 'Nope': unknown"),
    ],
)
def test_invalid_compositions_are_refused(composition: dict[str, Any], message: str) -> None:
    data = make_config(4).model_dump()
    data["plan"]["composition"] = composition
    with pytest.raises(ValueError, match=message):
        ProjectConfig.model_validate(data)
    assert CompositionConfig().spectrum == "flat"


# -- a production ---------------------------------------------------------------------------------


def test_batches_hold_the_planned_composition(tmp_path: Path, dataset: Any) -> None:
    """genuine 2 : jet 1 over genuine taus' pT x |eta| spectrum, muons all there are: every
    batch of every file holds each region's planned count, the types' totals are the ratios'
    and `check` passes."""
    workdir = tmp_path / "work"
    cli(*count_args(workdir, dataset.file_list))
    per_batch, batches = 2, 3
    options = ["--type-ratios", "genuine=2,muon=-1", "--spectrum", "type:genuine"]
    common = ["--pileup", PILEUP, "--events-per-batch-type", per_batch, "--batches", batches]
    shown = cli("summary", "--workdir", workdir, *common, *options, "--per-batch").stdout
    assert f"{batches} batches of candidates per region" in shown
    cli("plan", "--workdir", workdir, *common, *options)
    rows = [read_output(p) for p in sorted((workdir / "batches").glob("batch*.root"))]
    assert not rows  # nothing is written before run
    cli("run", "--workdir", workdir, "--workers", 1)
    provenance = json.loads((workdir / "batches" / "provenance.json").read_text())
    cells: Counter[tuple[str, str, int]] = Counter()
    for path in sorted((workdir / "batches").glob("batch*.root")):
        output = read_output(path)
        for key, region, batch in zip(
            output["bb_process_key"].to_list(),
            output["bb_region"].to_list(),
            output["bb_batch"].to_list(),
            strict=True,
        ):
            cells[(provenance["process_keys"][key], provenance["regions"][region], batch)] += 1
    counts = json.loads((workdir / "counts.json").read_text())
    inputs: Counter[tuple[str, str]] = Counter()
    for entry in counts.values():
        if entry.get("pileup") == PILEUP:
            for region, n in entry.items():
                if region.endswith(tuple(f"ptbin{i}" for i in range(100))):
                    inputs[(f"{entry['process']}_{PILEUP}", region)] += n
    by_region: dict[tuple[str, str], set[int]] = {}
    for (key, region, _batch), n in cells.items():
        by_region.setdefault((key, region), set()).add(n)
    for (key, region), seen in by_region.items():
        assert len(seen) == 1, (key, region, seen)  # the same count in every batch
        if region.startswith("muon"):
            assert seen == {inputs[(key, region)] // batches}  # all there is, once each
    per_type: Counter[tuple[str, int]] = Counter()
    for (_key, region, batch), n in cells.items():
        per_type[(region.split("_")[0], batch)] += n
    for batch in range(batches):
        genuine, jet = per_type[("genuine", batch)], per_type[("jet", batch)]
        assert genuine > jet  # genuine taus twice their regions' N, jets N
    assert "all outputs match the plan" in cli("check", "--workdir", workdir).stdout
    cli("report", "--workdir", workdir, "--output", tmp_path / "report")
    page = (tmp_path / "report" / "report.html").read_text()
    table = page[page.index('<table id="output-table">') :]
    table = table[: table.index("</table>")]
    found = re.findall(
        r'<tr><td>(\w+)</td><td class="number">(\d+)</td><td class="number">([\d.]+)</td></tr>',
        table,
    )
    assert {name for name, _, _ in found} == {"electron", "muon", "jet", "genuine"}
    for name, planned, mean in found:  # the composition against its target
        assert float(mean) == int(planned), name
        assert int(planned) == sum(per_type[(name, b)] for b in range(batches)) / batches


def test_plans_that_leave_no_region_are_one_line_errors() -> None:
    from balanced_batches.errors import PlanError

    with pytest.raises(PlanError, match="no region has a candidate for each of the 1000"):
        plan_with({"types": {"a": -1, "b": -1}}, batches=1000)
    with pytest.raises(PlanError, match="nothing sets the number of batches; pass --batches"):
        plan_with({"types": {"a": -1, "b": -1}})
    # every candidate is used at most once: --max-reuse has nothing to bound
    plan = plan_with({"types": {"a": -1, "b": -1}}, batches=2, max_reuse=1)
    assert plan.n_batches == 2 and np.all(plan.takes == plan.stream_total // 2)
