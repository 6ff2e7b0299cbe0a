"""Tests of regions.py: binning, types and region indices, against the original rules."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from balanced_batches.config import STANDARD_TYPES, Binning, ProjectConfig, load_binning
from balanced_batches.errors import ConfigError
from balanced_batches.regions import RegionSpace, Selection, bin_index, build_selection

# the original configuration, shipped with the examples
REFERENCE = Path(__file__).resolve().parents[1] / "examples" / "prod_Phase2_v2"
PT_EDGES = [20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0, 70.0, 80.0, 90.0, 100.0]
ABSETA_EDGES = [0.0, 0.6, 1.2, 1.7999999999999998, 2.4]


@pytest.fixture(scope="module")
def selection() -> Selection:
    """The selection of the reference binning with the standard types."""
    return build_selection(ProjectConfig(binning=load_binning(REFERENCE / "binning.yaml")))


def candidates(**columns: list[float] | list[int]) -> dict[str, np.ndarray]:
    """Branch arrays with ROOT's types: int32 gen-lepton branches, float32 kinematics."""
    defaults: dict[str, object] = {
        "genLepton_index": (np.int32, 0),
        "genLepton_kind": (np.int32, 5),
        "tau_pt": (np.float32, 22.0),
        "tau_eta": (np.float32, 0.1),
    }
    n = len(next(iter(columns.values())))
    arrays = {}
    for name, (dtype, default) in defaults.items():  # type: ignore[misc]
        arrays[name] = np.array(columns.get(name, [default] * n), dtype=dtype)
    return arrays


# -- bin_index ---------------------------------------------------------------


def test_bin_index_edges_belong_to_the_upper_bin() -> None:
    edges = np.array([20.0, 25.0, 30.0])
    values = np.array([19.999, 20.0, 24.999, 25.0, 29.999, 30.0, 1e9, np.inf])
    assert bin_index(values, edges).tolist() == [-1, 0, 0, 1, 1, 2, 2, 2]


def test_bin_index_below_first_edge_and_nan_are_no_bin() -> None:
    edges = np.array([0.0, 0.6, 1.2])
    values = np.array([-0.0, -1e-300, -np.inf, np.nan, -5.0])
    assert bin_index(values, edges).tolist() == [0, -1, -1, -1, -1]


def test_bin_index_every_reference_edge() -> None:
    edges = np.array(PT_EDGES)
    index = bin_index(edges, edges)
    assert index.tolist() == list(range(len(PT_EDGES)))
    below = bin_index(np.nextafter(edges, -np.inf), edges)
    assert below.tolist() == list(range(-1, len(PT_EDGES) - 1))


def test_bin_index_of_nothing_is_empty() -> None:
    assert bin_index(np.array([], dtype=np.float64), np.array([1.0, 2.0])).tolist() == []


# -- the reference region space ----------------------------------------------


def test_reference_space_has_260_regions(selection: Selection) -> None:
    space = selection.space
    assert space.type_names == ("electron", "muon", "jet", "genuine")
    assert list(space.pt_edges) == PT_EDGES
    assert list(space.abseta_edges) == ABSETA_EDGES
    assert (space.n_pt, space.n_abseta) == (13, 5)
    assert space.n_regions == 260
    assert len(space.names) == 260
    assert len(set(space.names)) == 260


def test_region_names_follow_the_original_pattern(selection: Selection) -> None:
    space = selection.space
    expected = {
        f"{t}_absetabin{i}_ptbin{j}"
        for t in ("electron", "muon", "jet", "genuine")
        for i in range(5)
        for j in range(13)
    }
    assert set(space.names) == expected
    assert space.names[0] == "electron_absetabin0_ptbin0"
    assert space.names[-1] == "genuine_absetabin4_ptbin12"


def test_parse_name_round_trips(selection: Selection) -> None:
    space = selection.space
    for region, name in enumerate(space.names):
        assert space.parse_name(name) == region
        type_index, abseta_bin, pt_bin = space.split(region)
        assert space.region_index(type_index, abseta_bin, pt_bin) == region
        assert name == f"{space.type_names[type_index]}_absetabin{abseta_bin}_ptbin{pt_bin}"
    assert space.type_of(np.arange(260)).tolist() == [r // 65 for r in range(260)]


@pytest.mark.parametrize(
    "name",
    [
        "tau_absetabin0_ptbin0",
        "jet_absetabin5_ptbin0",
        "jet_absetabin0_ptbin13",
        "jet_absetabin-1_ptbin0",
        "jet_ptbin0",
        "jet_absetabin0_ptbin0_extra",
        "Jet_absetabin0_ptbin0",
        "",
    ],
)
def test_parse_name_rejects_names_outside_the_grid(selection: Selection, name: str) -> None:
    with pytest.raises(ValueError, match="not a region name"):
        selection.space.parse_name(name)


def test_bin_labels(selection: Selection) -> None:
    space = selection.space
    assert space.pt_label(0) == "[20, 25)"
    assert space.pt_label(8) == "[60, 70)"
    assert space.pt_label(12) == ">= 100"
    assert space.abseta_label(2) == "[1.2, 1.8)"
    assert space.abseta_label(4) == ">= 2.4"


def test_selection_reads_exactly_the_needed_branches(selection: Selection) -> None:
    assert selection.branches == {"genLepton_index", "genLepton_kind", "tau_pt", "tau_eta"}


def test_build_selection_without_binning_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="binning"):
        build_selection(ProjectConfig())


# -- Selection.assign on hand-made candidates ----------------------------------


@pytest.mark.parametrize(
    ("index", "kind", "expected_type"),
    [
        (0, 1, "electron"),
        (2, 3, "electron"),
        (0, 2, "muon"),
        (1, 4, "muon"),
        (0, 5, "genuine"),
        (3, 5, "genuine"),
        (-1, 0, "jet"),
        (-1, 5, "jet"),
        (-1, 6, "jet"),
        (0, 6, None),
        (0, 0, None),
        (-2, 1, None),
        (-2, 5, None),
        (-7, 0, None),
    ],
)
def test_assign_types(
    selection: Selection, index: int, kind: int, expected_type: str | None
) -> None:
    arrays = candidates(
        genLepton_index=[index], genLepton_kind=[kind], tau_pt=[22.0], tau_eta=[0.1]
    )
    region = int(selection.assign(arrays)[0])
    if expected_type is None:
        assert region == -1
    else:
        assert region == selection.space.parse_name(f"{expected_type}_absetabin0_ptbin0")


def test_assign_kinematic_bins(selection: Selection) -> None:
    arrays = candidates(
        genLepton_index=[-1, -1, -1, -1, -1, -1, -1, -1],
        tau_pt=[19.9, 20.0, 59.9, 60.0, 99.9, 100.0, 3000.0, np.nan],
        tau_eta=[0.0, -0.6, 0.61, -1.25, 2.39, -2.4, 5.0, 0.0],
    )
    names = [
        None,
        "jet_absetabin1_ptbin0",
        "jet_absetabin1_ptbin7",
        "jet_absetabin2_ptbin8",
        "jet_absetabin3_ptbin11",
        "jet_absetabin4_ptbin12",
        "jet_absetabin4_ptbin12",
        None,
    ]
    expected = [-1 if n is None else selection.space.parse_name(n) for n in names]
    result = selection.assign(arrays)
    assert result.dtype == np.int32
    assert result.tolist() == expected


def test_assign_nan_eta_is_no_region(selection: Selection) -> None:
    arrays = candidates(genLepton_index=[-1], tau_eta=[np.nan])
    assert selection.assign(arrays).tolist() == [-1]


def test_float32_near_edges_compared_in_double_as_root_does(selection: Selection) -> None:
    """ROOT promotes the float branch to double before comparing with the double edge."""
    f32 = np.float32
    values = [
        f32(1.8),  # 1.7999999523... < 1.7999999999999998: still bin 2
        np.nextafter(f32(1.8), f32(np.inf)),  # 1.8000000715...: bin 3
        f32(0.6),  # 0.6000000238... >= 0.6: bin 1
        np.nextafter(f32(0.6), f32(0)),  # just below 0.6: bin 0
        f32(1.2),  # 1.2000000477... >= 1.2: bin 2
        np.nextafter(f32(1.2), f32(0)),
        f32(2.4),  # 2.4000000953... >= 2.4: overflow bin 4
        np.nextafter(f32(2.4), f32(0)),  # 2.3999998569...: bin 3
    ]
    expected_bins = [sum(float(v) >= edge for edge in ABSETA_EDGES) - 1 for v in values]
    assert expected_bins == [2, 3, 1, 0, 2, 1, 4, 3]
    eta = np.array(values, dtype=np.float32)
    arrays = candidates(genLepton_index=[-1] * len(values), tau_eta=-eta)
    regions = selection.assign(arrays)
    assert [selection.space.split(int(r))[1] for r in regions] == expected_bins


def test_float32_pt_next_to_edges(selection: Selection) -> None:
    f32 = np.float32
    pt = np.array(
        [np.nextafter(f32(25), f32(0)), f32(25), np.nextafter(f32(100), f32(0)), f32(100)],
        dtype=np.float32,
    )
    regions = selection.assign(candidates(genLepton_index=[-1] * 4, tau_pt=pt))
    assert [selection.space.split(int(r))[2] for r in regions] == [0, 1, 11, 12]


def test_first_matching_type_wins() -> None:
    config = ProjectConfig(
        binning=Binning(pt=[(0, 10, 10)], abseta=[(0, 1, 1)]),
        types={"wide": "x > 0", "narrow": "x > 1", "always": "true"},
        regions={"pt": "x", "abseta": "0"},
    )
    selection = build_selection(config)
    regions = selection.assign({"x": np.array([2.0, 0.5, 0.0, -1.0])})
    names = [selection.space.name(int(r)) if r >= 0 else None for r in regions]
    assert names == [
        "wide_absetabin0_ptbin0",
        "wide_absetabin0_ptbin0",
        "always_absetabin0_ptbin0",
        None,  # x = -1 is below the first pT edge
    ]


# -- property: assign equals the original rules, candidate by candidate --------


def naive_bin(value: float, edges: list[float]) -> int:
    """The original selections: edge[j] <= x < edge[j+1], overflow x >= edge[-1]."""
    if math.isnan(value):
        return -1
    for j in range(len(edges) - 1):
        if edges[j] <= value < edges[j + 1]:
            return j
    return len(edges) - 1 if value >= edges[-1] else -1


def naive_type(index: int, kind: int) -> str | None:
    if index >= 0 and kind in (1, 3):
        return "electron"
    if index >= 0 and kind in (2, 4):
        return "muon"
    if index >= 0 and kind == 5:
        return "genuine"
    if index == -1:
        return "jet"
    return None


def near_edges(edges: list[float], signed: bool) -> st.SearchStrategy[float]:
    """float32 values at, just below and just above the edges, plus anything."""
    points = []
    for edge in edges:
        e = np.float32(edge)
        points += [e, np.nextafter(e, np.float32(-np.inf)), np.nextafter(e, np.float32(np.inf))]
    if signed:
        points += [-p for p in points]
    special = st.sampled_from([float(p) for p in points] + [math.nan, math.inf, -math.inf])
    return special | st.floats(-300, 300, width=32)


@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_assign_matches_a_naive_per_candidate_implementation(
    selection: Selection, data: st.DataObject
) -> None:
    n = data.draw(st.integers(1, 40))
    arrays = {
        "genLepton_index": data.draw(hnp.arrays(np.int32, n, elements=st.integers(-3, 4))),
        "genLepton_kind": data.draw(hnp.arrays(np.int32, n, elements=st.integers(0, 7))),
        "tau_pt": data.draw(hnp.arrays(np.float32, n, elements=near_edges(PT_EDGES, False))),
        "tau_eta": data.draw(hnp.arrays(np.float32, n, elements=near_edges(ABSETA_EDGES, True))),
    }
    expected = []
    for i in range(n):
        type_name = naive_type(int(arrays["genLepton_index"][i]), int(arrays["genLepton_kind"][i]))
        pt_bin = naive_bin(float(arrays["tau_pt"][i]), PT_EDGES)
        eta_bin = naive_bin(abs(float(arrays["tau_eta"][i])), ABSETA_EDGES)
        if type_name is None or pt_bin < 0 or eta_bin < 0:
            expected.append(-1)
        else:
            expected.append(
                selection.space.parse_name(f"{type_name}_absetabin{eta_bin}_ptbin{pt_bin}")
            )
    assert selection.assign(arrays).tolist() == expected


def test_standard_types_are_the_originals() -> None:
    assert STANDARD_TYPES == {
        "electron": "genLepton_index >= 0 && (genLepton_kind == 1 || genLepton_kind == 3)",
        "muon": "genLepton_index >= 0 && (genLepton_kind == 2 || genLepton_kind == 4)",
        "jet": "genLepton_index == -1",
        "genuine": "genLepton_index >= 0 && genLepton_kind == 5",
    }


def test_region_space_arithmetic_on_a_tiny_grid() -> None:
    space = RegionSpace(("a", "b"), (20.0, 30.0, 40.0), (0.0, 1.0, 2.0))
    assert space.n_regions == 2 * 3 * 3
    assert space.region_index(1, 2, 0) == (1 * 3 + 2) * 3 + 0
    assert space.name(space.region_index(1, 2, 0)) == "b_absetabin2_ptbin0"
