"""Tests of the synthetic TauTuple generator and the sample catalogue."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot
from hypothesis import given, settings
from hypothesis import strategies as st

from balanced_batches.synthetic import generate
from balanced_batches.synthetic.generate import (
    BRANCH_TYPES,
    COMPRESSION_CHOICES,
    JAGGED_GROUPS,
    GenerateOptions,
    compression_codec,
    generate_chunks,
    generate_dataset,
    generate_file,
    select_samples,
)
from balanced_batches.synthetic.samples import CAMPAIGN, PHYSICS_KINDS, SAMPLES, Sample

COUNTERS = {"npfCand": (15, 60), "nele": (0, 3), "nmuon": (0, 3)}


def first_sample(physics: str, pileup: str = "PU200") -> Sample:
    """The first catalogue sample of a physics kind and pile-up scenario."""
    return next(s for s in SAMPLES if s.physics == physics and s.pileup == pileup)


def read_flat(path: Path) -> dict[str, np.ndarray]:
    """Every branch of the ``taus`` tree, jagged ones flattened, as numpy arrays."""
    with uproot.open(path) as f:
        arrays = f["taus"].arrays(library="ak")
    return {name: ak.to_numpy(ak.flatten(arrays[name], axis=None)) for name in arrays.fields}


def concat_chunks(sample: Sample, n: int, seed: int = 1) -> dict[str, Any]:
    """All chunks of one file concatenated (scalar branches only, plus the jagged counts)."""
    chunks = list(generate_chunks(sample, n, seed))
    out: dict[str, Any] = {
        name: np.concatenate([c[name] for c in chunks]) for name in generate.SCALAR_BRANCHES
    }
    for group in JAGGED_GROUPS:
        out[group] = ak.concatenate([c[group] for c in chunks])
    return out


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].tobytes() == b[name].tobytes(), name


# --- catalogue -------------------------------------------------------------------------------


def test_catalogue_holds_every_directory_once() -> None:
    assert CAMPAIGN == "prod_Phase2_v2"
    assert len(SAMPLES) == 98
    assert len({s.directory for s in SAMPLES}) == len(SAMPLES)
    assert {s.physics for s in SAMPLES} == set(PHYSICS_KINDS)
    assert {s.pileup for s in SAMPLES} == {"NoPU", "PU140", "PU200"}
    for s in SAMPLES:
        assert s.request_dir.startswith("crab_") and s.request_dir.endswith(s.pileup)
        assert s.directory == f"{s.dataset}/{s.request_dir}/{s.timestamp}/0000"
    physics = {s.request_dir: s.physics for s in SAMPLES}
    assert physics["crab_VBFHToTauTau_M125_PU140"] == "HTauTau"
    assert physics["crab_ZprimeToTauTau_M-500_NoPU"] == "ZprimeTauTau"
    assert physics["crab_TTToSemiLepton_PU200"] == "TT"
    assert physics["crab_SingleElectron_PT200to500_NoPU"] == "ElecGun"
    assert physics["crab_Muplus_Pt1000-gun_PU140"] == "MuonGun"
    assert {s.pileup for s in SAMPLES if s.request_dir == "crab_MinBias_ext1_NoPU"} == {"NoPU"}
    dy = first_sample("DY")
    assert (
        dy.directory
        == "DYToLL_M-50_TuneCP5_14TeV-pythia8/crab_DYToLL_M-50_PU200/210317_190547/0000"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        dy.physics = "QCD"  # type: ignore[misc]


def test_small_selection_spreads_over_physics_kinds() -> None:
    assert {s.physics for s in select_samples(5)} == {"DY", "TT", "QCD", "ElecGun", "MuonGun"}
    assert {s.physics for s in select_samples(len(PHYSICS_KINDS))} == set(PHYSICS_KINDS)
    assert all(s.pileup == "PU200" for s in select_samples(5))
    assert select_samples(None) == SAMPLES
    assert select_samples(1000) == SAMPLES
    picked = select_samples(20)
    assert len(picked) == 20 and len(set(picked)) == 20
    assert list(picked) == sorted(picked, key=SAMPLES.index)  # catalogue order


# --- dataset layout --------------------------------------------------------------------------


def test_dataset_follows_crab_layout(tmp_path: Path) -> None:
    options = GenerateOptions(
        tmp_path / "out", files_per_sample=2, entries_per_file=40, max_samples=3
    )
    flist = generate_dataset(options)
    assert flist == (tmp_path / "out" / "flist.txt").resolve()
    paths = [Path(line) for line in flist.read_text().splitlines()]
    assert len(paths) == 6
    expected = [
        (
            CAMPAIGN,
            "crab_output",
            s.dataset,
            s.request_dir,
            s.timestamp,
            "0000",
            f"eventTuple_{k}.root",
        )
        for s in select_samples(3)
        for k in (1, 2)
    ]
    assert [p.relative_to(flist.parent).parts for p in paths] == expected
    for path in paths:
        assert path.is_absolute() and path.is_file()
        with uproot.open(path) as f:
            assert f["taus"].num_entries == 40
    assert not list(tmp_path.rglob("*.tmp"))


def test_workers_do_not_change_the_files(tmp_path: Path) -> None:
    lists = {}
    for workers in (1, 2):
        options = GenerateOptions(
            tmp_path / f"w{workers}", files_per_sample=2, entries_per_file=60, max_samples=2
        )
        flist = generate_dataset(options, workers=workers)
        lists[workers] = [Path(p).relative_to(flist.parent) for p in flist.read_text().split()]
    assert lists[1] == lists[2]
    for rel in lists[1]:
        assert_same_arrays(read_flat(tmp_path / "w1" / rel), read_flat(tmp_path / "w2" / rel))


# --- content ---------------------------------------------------------------------------------


def test_branches_types_and_multiplicities(tmp_path: Path) -> None:
    path = tmp_path / "f.root"
    generate_file(path, first_sample("TT"), 400, seed=3, compression="zstd")
    with uproot.open(path) as f:
        tree = f["taus"]
        assert type(tree).__name__.startswith("Model_TTree")
        assert set(tree.keys()) == set(BRANCH_TYPES)
        for name, dtype in BRANCH_TYPES.items():
            interpretation = tree[name].interpretation
            content = getattr(interpretation, "content", interpretation)
            assert content.from_dtype.newbyteorder("=") == dtype, name
        assert tree["pfCand_pt"].count_branch.name == "npfCand"
        assert tree["ele_pt"].count_branch.name == "nele"
        assert tree["muon_pt"].count_branch.name == "nmuon"
        arrays = tree.arrays(library="ak")
    for counter, (low, high) in COUNTERS.items():
        counts = ak.to_numpy(arrays[counter])
        assert counts.min() >= low and counts.max() <= high, counter
        group = counter[1:]
        for field in JAGGED_GROUPS[group]:
            assert np.array_equal(ak.to_numpy(ak.num(arrays[f"{group}_{field}"])), counts)
    assert ak.to_numpy(arrays["npfCand"]).max() > ak.to_numpy(arrays["npfCand"]).min()
    assert ak.to_numpy(arrays["nele"]).max() > 0 and ak.to_numpy(arrays["nmuon"]).max() > 0
    for name in BRANCH_TYPES:
        values = ak.to_numpy(ak.flatten(arrays[name], axis=None))
        assert np.isfinite(values.astype(np.float64)).all(), name


def test_same_seed_same_arrays_other_seed_other_arrays(tmp_path: Path) -> None:
    sample = first_sample("DY")
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        generate_file(tmp_path / f"{name}.root", sample, 150, seed, "lz4")
    generate_file(tmp_path / "k2.root", sample, 150, 7, "lz4", file_index=2)
    a, b, c, k2 = (read_flat(tmp_path / f"{x}.root") for x in ("a", "b", "c", "k2"))
    assert_same_arrays(a, b)
    assert not np.array_equal(a["tau_pt"], c["tau_pt"])
    assert not np.array_equal(a["tau_pt"], k2["tau_pt"])
    assert not np.intersect1d(a["evt"], k2["evt"]).size  # event numbers differ between files


def test_pt_spectrum_falls_steeply_and_eta_reaches_beyond_tracker_bin() -> None:
    pt = np.concatenate([concat_chunks(first_sample(k), 4000)["tau_pt"] for k in ("DY", "TT")])
    assert np.isfinite(pt).all() and pt.min() >= 15.0
    assert np.mean(pt < 20) > 0.15
    assert 0 < np.mean(pt > 100) < 0.1
    counts, _ = np.histogram(pt, bins=[15, 30, 60, 100, np.inf])
    assert counts[0] > counts[1] > counts[2] > counts[3] > 0
    eta = concat_chunks(first_sample("QCD"), 4000)["tau_eta"]
    assert np.abs(eta).max() < 2.8 and 0 < np.mean(np.abs(eta) > 2.4) < 0.2
    gun = concat_chunks(first_sample("MuonGun"), 2000)["tau_pt"]
    assert np.median(gun) > np.median(pt)  # guns are harder


@pytest.mark.parametrize(
    ("physics", "kind", "minimum"),
    [
        ("QCD", -1, 0.90),
        ("WJets", -1, 0.85),
        ("MinBias", -1, 0.85),
        ("MuonGun", 2, 0.80),
        ("ElecGun", 1, 0.75),
        ("ZprimeTauTau", 5, 0.50),
        ("HTauTau", 5, 0.35),
    ],
)
def test_type_mix_follows_physics(physics: str, kind: int, minimum: float) -> None:
    cols = concat_chunks(first_sample(physics), 3000)
    assert np.mean(cols["genLepton_kind"] == kind) >= minimum


def test_drell_yan_has_every_type_and_truth_columns_agree() -> None:
    cols = concat_chunks(first_sample("DY"), 3000)
    index, kind = cols["genLepton_index"], cols["genLepton_kind"]
    fractions = {k: np.mean(kind == k) for k in (-1, 1, 2, 5, 6)}
    assert all(f > 0.01 for f in fractions.values()), fractions
    assert fractions[6] < 0.1
    assert np.array_equal(index == -1, kind == -1)
    assert set(np.unique(kind)) <= {-1, 1, 2, 3, 4, 5, 6}
    matched = index >= 0
    assert (cols["genLepton_vis_pt"][matched] > 0).all()
    assert (cols["genLepton_vis_pt"][~matched] == -999).all()


def test_candidates_share_events() -> None:
    cols = concat_chunks(first_sample("TT"), 2000)
    evt = cols["evt"]
    assert np.all(np.diff(evt.astype(np.int64)) >= 0)  # events are contiguous
    n_events = len(np.unique(evt))
    assert n_events < len(evt) / 2
    first_of_event = np.concatenate(([True], np.diff(evt.astype(np.int64)) > 0))
    assert (cols["tau_index"][first_of_event] == 0).all()
    assert (cols["tau_index"][~first_of_event] > 0).all()
    assert len(np.unique(cols["npu"][first_of_event])) > 1


def test_chunks_continue_entry_and_event_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generate, "CHUNK_ENTRIES", 64)
    path = tmp_path / "chunked.root"
    generate_file(path, first_sample("QCD"), 200, 5, "zlib")
    cols = read_flat(path)
    assert np.array_equal(cols["entry_index"], np.arange(200))
    assert np.all(np.diff(cols["evt"].astype(np.int64)) >= 0)
    with uproot.open(path) as f:
        assert f["taus"]["tau_pt"].num_baskets == 4


# --- compression -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", COMPRESSION_CHOICES)
def test_every_compression_writes_a_readable_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.root"
    generate_file(path, first_sample("MinBias"), 30, 1, name)
    assert read_flat(path)["tau_pt"].shape == (30,)


def test_bad_compression_raises_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"gzip.*zlib, lzma, lz4, zstd, none"):
        GenerateOptions(tmp_path, compression="gzip")
    with pytest.raises(ValueError, match="brotli"):
        generate_file(tmp_path / "x.root", SAMPLES[0], 10, 1, "brotli")
    assert compression_codec("none") is None
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "field", [{"files_per_sample": 0}, {"entries_per_file": 0}, {"max_samples": 0}, {"seed": -1}]
)
def test_bad_options_raise_value_error(tmp_path: Path, field: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        GenerateOptions(tmp_path, **field)  # type: ignore[arg-type]


# --- invariants ------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    physics=st.sampled_from(PHYSICS_KINDS),
)
def test_chunk_invariants(n: int, seed: int, physics: str) -> None:
    cols = concat_chunks(first_sample(physics, "PU140"), n, seed)
    assert np.array_equal(cols["entry_index"], np.arange(n))
    assert (cols["tau_pt"] >= 15).all() and np.isfinite(cols["tau_pt"]).all()
    assert set(np.unique(cols["genLepton_kind"])) <= {-1, 1, 2, 3, 4, 5, 6}
    assert np.array_equal(cols["genLepton_index"] == -1, cols["genLepton_kind"] == -1)
    for counter, (low, high) in COUNTERS.items():
        counts = ak.to_numpy(ak.num(cols[counter[1:]]))
        assert len(counts) == n and counts.min() >= low and counts.max() <= high
    for name, dtype in generate.SCALAR_BRANCHES.items():
        assert cols[name].dtype == dtype, name


def test_vector_branches_hold_the_same_values_and_go_through_the_pipeline(tmp_path: Path) -> None:
    """`--vector-branches` writes every jagged branch as std::vector<T> without counters, as
    ROOT writes CMS TauTuples; the values are those of the counted-array files, and counting
    and making batches from them gives the same counts and the same rows."""
    from conftest import BINNING, CAMPAIGN, PROCESS_TYPES, cli

    for name, vectors in (("counted", ()), ("vectors", ("--vector-branches",))):
        cli("generate", tmp_path / name, "--max-samples", 2, "--entries-per-file", 300,
            "--workers", 1, *vectors)  # fmt: skip
    counted = sorted((tmp_path / "counted").rglob("*.root"))
    for path in counted:
        vector_path = tmp_path / "vectors" / path.relative_to(tmp_path / "counted")
        with uproot.open(path) as plain, uproot.open(vector_path) as vectors:
            plain_tree, vector_tree = plain["taus"], vectors["taus"]
            leaf_counts = {
                name: branch.member("fLeaves")[0].member("fLeafCount")
                for name, branch in plain_tree.items()
            }
            jagged = [name for name, count in leaf_counts.items() if count is not None]
            counters = {c.member("fName") for c in leaf_counts.values() if c is not None}
            assert jagged and counters
            assert set(vector_tree.keys()) == set(plain_tree.keys()) - counters
            for name in jagged:
                assert vector_tree[name].typename.startswith("std::vector<"), name
            names = vector_tree.keys()
            for name in names:
                assert ak.array_equal(vector_tree[name].array(), plain_tree[name].array()), name

    results = {}
    for name in ("counted", "vectors"):
        workdir = tmp_path / f"work-{name}"
        cli("count", "--workdir", workdir, "--prod-campaign", CAMPAIGN, "--process-types",
            PROCESS_TYPES, "--pt-abseta-bins", BINNING, "--input-file-list",
            tmp_path / name / "flist.txt", "--workers", 1)  # fmt: skip
        cli("plan", "--workdir", workdir, "--pileup", "all", "--events-per-batch-type", 2,
            "--batches", 2)  # fmt: skip
        cli("run", "--workdir", workdir, "--workers", 1)
        cli("check", "--workdir", workdir, "--sample", 100)
        counts = (workdir / "counts.json").read_text().replace(str(tmp_path / name), "")
        with uproot.open(workdir / "batches" / "batch0.root") as output:
            rows = output["taus"].arrays(["tau_pt", "pfCand_pt", "ele_pt", "bb_source_entry"])
        results[name] = (counts, rows)
    assert results["vectors"][0] == results["counted"][0]
    for field in ("tau_pt", "pfCand_pt", "ele_pt", "bb_source_entry"):
        assert ak.array_equal(results["vectors"][1][field], results["counted"][1][field]), field


def test_generate_never_replaces_files_it_did_not_write(tmp_path: Path) -> None:
    """A file at a planned name that generate did not write (a real TauTuple, with
    `--like-file-list` naming files as the real production does) stops generate before it
    writes anything; its own earlier files are replaced; `--overwrite` replaces the others."""
    from conftest import cli

    args = ["--max-samples", 2, "--entries-per-file", 100, "--workers", 1]
    cli("generate", tmp_path / "data", *args)
    planned = sorted((tmp_path / "data").rglob("*.root"))
    cli("generate", tmp_path / "data", *args)  # its own files: made again
    real = planned[-1]
    real.write_bytes(b"someone's data")
    before = {path: path.stat().st_mtime_ns for path in planned}
    refused = cli("generate", tmp_path / "data", *args, expect=2)
    assert refused.stderr.strip() == (
        f"error: {real} exists and was not written by generate; choose another directory, "
        "or pass --overwrite to replace it"
    )
    assert real.read_bytes() == b"someone's data"
    assert {path: path.stat().st_mtime_ns for path in planned} == before  # nothing written
    cli("generate", tmp_path / "data", *args, "--overwrite")
    with uproot.open(real) as handle:
        assert handle["taus"].num_entries == 100
