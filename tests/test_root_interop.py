"""ROOT itself (PyPI `root`): inputs written by ROOT go through the pipeline; ROOT reads outputs."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest

from conftest import (
    CAMPAIGN,
    PROVENANCE_BRANCHES,
    Production,
    assert_rows_equal_sources,
    cli,
    produce,
    read_output,
    region_counts,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the PyPI build warns that it is an alpha release
    ROOT = pytest.importorskip("ROOT")

ROOT.gROOT.SetBatch(True)

ENTRIES = 200
VECTORS = {"pf_pt": "float", "pf_charge": "int", "pf_dz": "double"}
SCALARS = {  # name: (ROOT leaf code, numpy dtype)
    "genLepton_index": ("I", np.int32),
    "genLepton_kind": ("I", np.int32),
    "tau_pt": ("F", np.float32),
    "tau_eta": ("F", np.float32),
    "evt": ("l", np.uint64),
    "weight": ("D", np.float64),
}
SAMPLES = {  # process directory -> probabilities of genLepton_kind -1, 1, 2, 3, 4, 5, 6
    "DYToLL_M-50/crab_DYToLL_M-50_PU200": [0.3, 0.15, 0.15, 0.05, 0.05, 0.25, 0.05],
    "QCD_Pt-15to3000_Flat/crab_QCD_Pt-15to3000_Flat_PU200": [0.9, 0.02, 0.02, 0, 0, 0.03, 0.03],
}
COARSE = "pt: [[20.0, 60.0, 20.0]]\nabseta: [[0.0, 1.2, 1.2]]\n"


def truth_columns(seed: int) -> dict[str, Any]:
    """The content of one input file: scalars as numpy, vectors as lists of numpy arrays."""
    rng = np.random.default_rng(seed)
    probabilities = list(SAMPLES.values())[seed % 2]
    kind = rng.choice([-1, 1, 2, 3, 4, 5, 6], ENTRIES, p=probabilities).astype(np.int32)
    sizes = rng.integers(0, 6, ENTRIES)
    return {
        "genLepton_kind": kind,
        "genLepton_index": np.where(kind == -1, -1, rng.integers(0, 3, ENTRIES)).astype(np.int32),
        "tau_pt": rng.uniform(15.0, 90.0, ENTRIES).astype(np.float32),
        "tau_eta": rng.uniform(-2.0, 2.0, ENTRIES).astype(np.float32),
        "evt": (np.arange(ENTRIES) + 10**12 * seed).astype(np.uint64),
        "weight": rng.normal(1.0, 0.3, ENTRIES),
        "pf_pt": [rng.exponential(10.0, k).astype(np.float32) for k in sizes],
        "pf_charge": [rng.integers(-1, 2, k).astype(np.int32) for k in sizes],
        "pf_dz": [rng.normal(0.0, 0.1, k) for k in sizes],
    }


def write_with_root(path: Path, columns: dict[str, Any]) -> None:
    """A `taus` TTree filled entry by entry through PyROOT, with std::vector branches."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = ROOT.TFile(str(path), "RECREATE")
    tree = ROOT.TTree("taus", "taus")
    buffers = {name: np.zeros(1, dtype=dtype) for name, (_, dtype) in SCALARS.items()}
    for name, (code, _) in SCALARS.items():
        tree.Branch(name, buffers[name], f"{name}/{code}")
    vectors = {name: ROOT.std.vector[kind]() for name, kind in VECTORS.items()}
    for name, vector in vectors.items():
        tree.Branch(name, vector)
    for entry in range(ENTRIES):
        for name, buffer in buffers.items():
            buffer[0] = columns[name][entry]
        for name, vector in vectors.items():
            vector.clear()
            for value in columns[name][entry].tolist():
                vector.push_back(value)
        tree.Fill()
    handle.Write()
    handle.Close()


def as_awkward(columns: dict[str, Any]) -> ak.Array:
    """The truth of one file as the awkward array uproot would give."""
    data = {name: columns[name] for name in SCALARS}
    for name in VECTORS:
        values = columns[name]
        data[name] = ak.unflatten(np.concatenate(values), [len(v) for v in values])
    return ak.Array(data)


@dataclass(frozen=True)
class RootInputs:
    """A production over four files written by ROOT."""

    production: Production
    truth: dict[str, dict[str, Any]]  # path -> columns
    binning: Path


@pytest.fixture(scope="module")
def root_inputs(tmp_path_factory: pytest.TempPathFactory) -> RootInputs:
    base = tmp_path_factory.mktemp("root-inputs")
    truth = {}
    for seed, (directory, k) in enumerate((d, k) for d in SAMPLES for k in (1, 2)):
        path = input_path(base, directory, k)
        truth[str(path)] = truth_columns(seed)
        write_with_root(path, truth[str(path)])
    file_list = base / "flist.txt"
    file_list.write_text("".join(f"{path}\n" for path in truth))
    binning = base / "binning.yaml"
    binning.write_text(COARSE)
    workdir = base / "work"
    return RootInputs(
        produce(workdir, file_list, plan_args(workdir), binning=binning), truth, binning
    )


def input_path(base: Path, directory: str, k: int) -> Path:
    """Where input file k of a sample goes (the campaign's crab layout)."""
    return base / CAMPAIGN / "crab_output" / directory / "0000" / f"eventTuple_{k}.root"


def plan_args(workdir: Path, *more: object) -> list[object]:
    """One PU200 plan of the ROOT-written inputs."""
    return ["plan", "--workdir", workdir, "--pileup", "PU200", "--events-per-batch-type", 3,
            "--batches", 2, "--seed", 5, *more]  # fmt: skip


def test_root_written_inputs_are_counted_like_the_original(root_inputs: RootInputs) -> None:
    counts = json.loads((root_inputs.production.workdir / "counts.json").read_text())
    assert len(counts) == 4
    for entry in counts.values():
        expected = region_counts(root_inputs.truth[entry["path"]], root_inputs.binning)
        regions = {k: v for k, v in entry.items() if k not in ("path", "process", "pileup")}
        assert regions == expected
        assert entry["process"] in ("DY", "QCD") and entry["pileup"] == "PU200"


def test_outputs_of_root_written_inputs_equal_their_sources(root_inputs: RootInputs) -> None:
    production = root_inputs.production
    files = production.provenance["source_files"]
    truth = {int(i): as_awkward(root_inputs.truth[path]) for i, path in files.items()}
    outputs = production.outputs()
    assert len(outputs) == 2
    for path in outputs:
        rows = read_output(path)
        assert len(rows) > 0
        assert set(rows.fields) >= {*SCALARS, *VECTORS, *PROVENANCE_BRANCHES}
        for extra in set(rows.fields) - {*SCALARS, *VECTORS, *PROVENANCE_BRANCHES}:
            # TTree bookkeeping only: the length of a jagged branch
            jagged = next(name for name in VECTORS if extra in (f"n{name}", f"n_{name}"))
            assert ak.to_list(rows[extra]) == ak.to_list(ak.num(rows[jagged])), extra
        assert_rows_equal_sources(rows, truth, path.name)
    check = cli("check", "--workdir", production.workdir, "--sample", 10_000)
    assert "all outputs match the plan" in check.stdout


def root_columns(path: Path, columns: list[str]) -> tuple[int, dict[str, list[Any]]]:
    """(entries, columns) of the output tree as ROOT's RDataFrame reads them, as Python lists."""
    frame = ROOT.RDataFrame("taus", str(path))
    entries = frame.Count()
    arrays = frame.AsNumpy(columns)  # one event loop fills both
    result: dict[str, list[Any]] = {}
    for name in columns:
        values = arrays[name]
        if values.dtype == object:  # RVec per entry
            result[name] = [np.asarray(v).tolist() for v in values]
        else:
            result[name] = values.tolist()
    return int(entries.GetValue()), result


def test_root_reads_our_default_output(reference: Production) -> None:
    path = reference.outputs()[0]
    rows = read_output(path)
    columns = [
        "tau_pt",
        "evt",
        "genLepton_kind",
        "bb_source_entry",
        "bb_region",
        "pfCand_pt",
        "muon_numberOfValidHits",
        "npfCand",
    ]
    handle = ROOT.TFile.Open(str(path))
    try:
        tree = handle.Get("taus")
        assert tree.GetEntries() == len(rows)
        tree.GetEntry(len(rows) - 1)
        assert tree.bb_source_entry == rows["bb_source_entry"][-1]
        assert tree.npfCand == len(rows["pfCand_pt"][-1])
    finally:
        handle.Close()
    entries, from_root = root_columns(path, columns)
    assert entries == len(rows)
    for name in columns:
        assert from_root[name] == ak.to_list(rows[name]), name


def test_root_reads_the_output_of_root_written_inputs(root_inputs: RootInputs) -> None:
    path = root_inputs.production.outputs()[0]
    rows = read_output(path)
    columns = [*SCALARS, *VECTORS, "bb_batch"]
    entries, from_root = root_columns(path, columns)
    assert entries == len(rows)
    for name in columns:
        assert from_root[name] == ak.to_list(rows[name]), name


def test_root_reads_our_rntuple_output(in_format: Callable[[str], Production]) -> None:
    path = in_format("rntuple").outputs()[0]
    rows = read_output(path)
    columns = ["tau_pt", "evt", "bb_source_file", "pfCand_pt", "ele_pt", "muon_numberOfValidHits"]
    entries, from_root = root_columns(path, columns)
    assert entries == len(rows)
    for name in columns:
        assert from_root[name] == ak.to_list(rows[name]), name


# 64-bit leaves are Long64_t/ULong64_t to ROOT; <cstdint>'s names are long on Linux
ROOT_NAMES = {"int64_t": "Long64_t", "uint64_t": "ULong64_t"}


def test_outputs_of_vector_inputs_keep_std_vector_branches_that_cpp_binds(tmp_path: Path) -> None:
    """Inputs whose jagged branches are std::vector<T> (as ROOT writes CMS TauTuples) give
    outputs with the same branches and types, plus the provenance scalars, nothing else; C++
    binding `std::vector<T>*` with SetBranchAddress (as TauMLTools' TauTuple does), TTreeReader,
    RDataFrame and TTree::Draw read them, and every value equals its source entry."""
    import subprocess
    import sys

    import uproot

    from conftest import TREE, read_sources

    cli("generate", tmp_path / "data", "--max-samples", 3, "--entries-per-file", 300,
        "--vector-branches", "--workers", 1)  # fmt: skip
    production = produce(
        tmp_path / "work",
        tmp_path / "data" / "flist.txt",
        ["plan", "--workdir", tmp_path / "work", "--pileup", "all",
         "--events-per-batch-type", 2, "--batches", 2],
    )  # fmt: skip
    output = production.outputs()[0]
    first_input = next(iter(production.provenance["source_files"].values()))
    with uproot.open(first_input) as handle, uproot.open(output) as written:
        inputs = {name: branch.typename for name, branch in handle[TREE].items()}
        outputs = {name: branch.typename for name, branch in written[TREE].items()}
    assert set(outputs) == set(inputs) | set(PROVENANCE_BRANCHES)
    assert {name: outputs[name] for name in inputs} == inputs
    assert any(t.startswith("std::vector<") for t in inputs.values())

    rows = read_output(output)
    assert_rows_equal_sources(rows, read_sources(production.provenance), output.name)

    schema = [
        {"name": name, "kind": "vector", "ctype": typename[len("std::vector<") : -1]}
        if typename.startswith("std::vector<")
        else {"name": name, "kind": "scalar", "ctype": ROOT_NAMES.get(typename, typename)}
        for name, typename in outputs.items()
    ]
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(json.dumps(schema))
    reader = Path(__file__).with_name("ttree_root_reader.py")
    finished = subprocess.run(
        [sys.executable, reader, schema_path, TREE, output],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr
    assert "Error" not in finished.stderr and "Warning" not in finished.stderr, finished.stderr
    seen = json.loads(finished.stdout)[str(output)]
    values, sizes = seen["branch_address"]
    for branch in schema:
        name = branch["name"]
        expected = rows[name]
        if branch["kind"] == "vector":
            flat = ak.to_numpy(ak.flatten(expected)).astype(float).tolist()
            counts = ak.to_numpy(ak.num(expected)).astype(float).tolist()
            assert values[name] == flat and sizes[name] == counts, name
            assert seen["reader_value"][name] == [flat, counts], name
            assert seen["reader_array"][name] == [flat, counts], name
            assert seen["draw"][name] == flat, name
            if branch["ctype"] != "bool":
                assert seen["dataframe"][name][:2] == [flat, counts], name
        else:
            assert values[name] == ak.to_numpy(expected).astype(float).tolist(), name
