"""Branch types through the pipeline, with ROOT itself (PyPI `root`).

Inputs written by PyROOT hold fixed-size arrays (`tau_p3[3]/F`, `tau_cov[2][2]/I`), a
`std::vector<long>` (which ROOT tells from `std::vector<Long64_t>`) beside other vectors and
scalars. `--format root` outputs keep every type: C++ binds each branch as the input's type
(SetBranchAddress answers kMatch), uproot reads the same types, and the values are their
sources'. Inputs that differ in a branch's type stop `run` with one line naming the file, the
branch and both types. ROOT's `hadd` merges two outputs into a file C++ reads.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot

from conftest import (
    PROVENANCE_BRANCHES,
    TREE,
    Production,
    assert_rows_equal_sources,
    cli,
    count_args,
    produce,
    read_output,
    read_sources,
)
from test_root_interop import (
    COARSE,
    ENTRIES,
    ROOT,
    SAMPLES,
    SCALARS,
    VECTORS,
    input_path,
    plan_args,
    truth_columns,
)

FIXED = {"tau_p3": ("F", np.float32, (3,)), "tau_cov": ("I", np.int32, (2, 2))}
LONG_VECTOR = "pf_id"  # std::vector<long>: ROOT's own spelling of int64 is Long64_t
VECTOR_TYPES = {**VECTORS, LONG_VECTOR: "long"}
CPP_TYPES = {"F": "float", "I": "int"}


def typed_columns(seed: int) -> dict[str, Any]:
    """The content of one input file: `truth_columns`, fixed-size arrays and `pf_id`."""
    columns = truth_columns(seed)
    rng = np.random.default_rng(1000 + seed)
    for name, (_, dtype, shape) in FIXED.items():
        columns[name] = (rng.normal(0.0, 50.0, (ENTRIES, *shape))).astype(dtype)
    columns[LONG_VECTOR] = [
        rng.integers(-(2**40), 2**40, len(pt)).astype(np.int64) for pt in columns["pf_pt"]
    ]
    return columns


@dataclass(frozen=True)
class Kinds:
    """How one file writes its branches: name -> element type of a std::vector, leaf code and
    shape of a fixed-size array, or counter of a counted array."""

    vectors: dict[str, str]
    fixed: dict[str, tuple[str, tuple[int, ...]]]
    counted: dict[str, str]
    counter_codes: dict[str, str] = field(default_factory=dict)  # leaf code; I by default


TYPED = Kinds(VECTOR_TYPES, {n: (code, shape) for n, (code, _, shape) in FIXED.items()}, {})


def tree_of_scalars(path: Path) -> tuple[Any, Any, dict[str, np.ndarray]]:
    """A new ROOT file at `path` with a `taus` TTree of SCALARS' branches, and their buffers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = ROOT.TFile(str(path), "RECREATE")
    tree = ROOT.TTree(TREE, TREE)
    buffers = {name: np.zeros(1, dtype=dtype) for name, (_, dtype) in SCALARS.items()}
    for name, (code, _) in SCALARS.items():
        tree.Branch(name, buffers[name], f"{name}/{code}")
    return handle, tree, buffers


def write_typed(path: Path, columns: dict[str, Any], kinds: Kinds = TYPED) -> None:
    """A `taus` TTree filled entry by entry through PyROOT, each branch of the kind given."""
    handle, tree, buffers = tree_of_scalars(path)
    for name, (code, shape) in kinds.fixed.items():
        buffers[name] = np.zeros(shape, dtype=FIXED[name][1])
        tree.Branch(name, buffers[name], f"{name}{''.join(f'[{n}]' for n in shape)}/{code}")
    for name, counter in kinds.counted.items():
        if counter not in buffers:  # one counter for every array it counts
            code = kinds.counter_codes.get(counter, "I")
            buffers[counter] = np.zeros(1, dtype={"I": np.int32, "i": np.uint32}[code])
            tree.Branch(counter, buffers[counter], f"{counter}/{code}")
        buffers[name] = np.zeros(64, dtype=np.float32)
        tree.Branch(name, buffers[name], f"{name}[{counter}]/F")
    vectors = {name: ROOT.std.vector[kind]() for name, kind in kinds.vectors.items()}
    for name, vector in vectors.items():
        tree.Branch(name, vector)
    for entry in range(ENTRIES):
        for name in (*SCALARS, *kinds.fixed):
            buffers[name][...] = columns[name][entry]
        for name, counter in kinds.counted.items():
            values = columns[name][entry]
            buffers[counter][0] = len(values)
            buffers[name][: len(values)] = values
        for name, vector in vectors.items():
            vector.clear()
            for value in np.asarray(columns[name][entry]).reshape(-1).tolist():
                vector.push_back(value)
        tree.Fill()
    handle.Write()
    handle.Close()


@dataclass(frozen=True)
class TypedInputs:
    """A production over four ROOT-written files with fixed-size arrays and vector<long>."""

    production: Production
    paths: list[Path]
    binning: Path


@pytest.fixture(scope="module")
def typed(tmp_path_factory: pytest.TempPathFactory) -> TypedInputs:
    base = tmp_path_factory.mktemp("typed-inputs")
    paths = [input_path(base, d, k) for d in SAMPLES for k in (1, 2)]
    for seed, path in enumerate(paths):
        write_typed(path, typed_columns(seed))
    file_list = base / "flist.txt"
    file_list.write_text("".join(f"{path}\n" for path in paths))
    binning = base / "binning.yaml"
    binning.write_text(COARSE)
    workdir = base / "work"
    return TypedInputs(
        produce(workdir, file_list, plan_args(workdir), binning=binning), paths, binning
    )


def typenames(path: Path | str) -> dict[str, str]:
    """Each branch's type as uproot names it, ROOT's class name for a std::vector."""
    with uproot.open(path) as handle:
        return {
            name: f"std::{branch.member('fClassName')}"
            if branch.classname == "TBranchElement"
            else branch.typename
            for name, branch in handle[TREE].items()
        }


# C++ binding every branch as TauMLTools' TauTuple does: C arrays for fixed-size arrays,
# std::vector<T>* for vectors; `statuses` gets what each SetBranchAddress answered
# (0, kMatch: the exact type; 1, kMatchConversion: ROOT converts, as for vector<Long64_t>)
ROOT.gInterpreter.Declare(
    """
#include <map>
#include <string>
#include <vector>
#include "TFile.h"
#include "TTree.h"
long long bb_read_typed(const char* path, std::map<std::string, std::vector<double>>& values,
                        std::map<std::string, int>& statuses) {
  TFile file(path);
  TTree* tree = file.Get<TTree>("taus");
  float p3[3];
  int cov[2][2];
  float tau_pt;
  std::vector<float>* pf_pt = nullptr;
  std::vector<int>* pf_charge = nullptr;
  std::vector<double>* pf_dz = nullptr;
  std::vector<long>* pf_id = nullptr;
  statuses["tau_p3"] = tree->SetBranchAddress("tau_p3", p3);
  statuses["tau_cov"] = tree->SetBranchAddress("tau_cov", cov);
  statuses["tau_pt"] = tree->SetBranchAddress("tau_pt", &tau_pt);
  statuses["pf_pt"] = tree->SetBranchAddress("pf_pt", &pf_pt);
  statuses["pf_charge"] = tree->SetBranchAddress("pf_charge", &pf_charge);
  statuses["pf_dz"] = tree->SetBranchAddress("pf_dz", &pf_dz);
  statuses["pf_id"] = tree->SetBranchAddress("pf_id", &pf_id);
  for (Long64_t i = 0; i < tree->GetEntries(); ++i) {
    if (tree->GetEntry(i) <= 0) return -1;
    for (int k = 0; k < 3; ++k) values["tau_p3"].push_back(p3[k]);
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 2; ++k) values["tau_cov"].push_back(cov[j][k]);
    values["tau_pt"].push_back(tau_pt);
    for (auto v : *pf_pt) values["pf_pt"].push_back(v);
    for (auto v : *pf_charge) values["pf_charge"].push_back(v);
    for (auto v : *pf_dz) values["pf_dz"].push_back(v);
    for (auto v : *pf_id) values["pf_id"].push_back(v);
    values["pf_size"].push_back(pf_pt->size());
  }
  long long entries = tree->GetEntries();
  tree->ResetBranchAddresses();
  return entries;
}
"""
)
CPP_BRANCHES = ("tau_p3", "tau_cov", "tau_pt", "pf_pt", "pf_charge", "pf_dz", "pf_id")


def read_with_cpp(path: Path) -> tuple[int, dict[str, list[float]], dict[str, int]]:
    """(entries, values as doubles, SetBranchAddress statuses) as `bb_read_typed` saw them."""
    values = ROOT.std.map["std::string", "std::vector<double>"]()
    statuses = ROOT.std.map["std::string", "int"]()
    entries = int(ROOT.bb_read_typed(str(path), values, statuses))
    assert entries >= 0, f"{path}: GetEntry failed"
    return (
        entries,
        {str(pair.first): list(pair.second) for pair in values},
        {str(pair.first): int(pair.second) for pair in statuses},
    )


def as_doubles(rows: ak.Array, name: str) -> list[float]:
    """Every value of a branch, row after row, as doubles (what the C++ reader collects)."""
    return ak.to_numpy(ak.ravel(rows[name])).astype(float).tolist()


def test_fixed_arrays_and_vector_spellings_keep_their_types(typed: TypedInputs) -> None:
    """Every input branch comes out with its type: `float[3]`, `int32_t[2][2]`,
    `std::vector<long>` (not vector<Long64_t>), the other vectors and scalars; C++ binds each
    as its input type with an exact match; values equal their sources; `check` agrees."""
    production = typed.production
    inputs = typenames(typed.paths[0])
    assert inputs["tau_p3"] == "float[3]" and inputs["tau_cov"] == "int32_t[2][2]"
    assert inputs[LONG_VECTOR] == "std::vector<long>"
    sources = read_sources(production.provenance)
    outputs = production.outputs()
    assert len(outputs) == 2
    for output in outputs:
        written = typenames(output)
        assert set(written) == {*inputs, *PROVENANCE_BRANCHES}
        assert {name: written[name] for name in inputs} == inputs
        rows = read_output(output)
        assert str(rows["tau_cov"].type.content) == "2 * 2 * int32"
        assert_rows_equal_sources(rows, sources, output.name)
        entries, values, statuses = read_with_cpp(output)
        assert entries == len(rows) > 0
        assert statuses == dict.fromkeys(CPP_BRANCHES, 0)  # kMatch: no conversion
        for name in CPP_BRANCHES:
            assert values[name] == as_doubles(rows, name), name
        assert values["pf_size"] == ak.to_numpy(ak.num(rows["pf_pt"])).astype(float).tolist()
    check = cli("check", "--workdir", production.workdir, "--sample", 10_000)
    assert "all outputs match the plan" in check.stdout


def hadd_executable() -> Path:
    """ROOT's hadd: beside the PyPI package's module (ROOT/bin), or on the PATH."""
    beside = Path(ROOT.__file__).parent / "bin" / "hadd"
    found = beside if beside.is_file() else shutil.which("hadd")
    if found is None:
        pytest.skip("no hadd in this ROOT installation")
    return Path(found)


def test_hadd_merges_two_outputs_with_vector_branches(typed: TypedInputs, tmp_path: Path) -> None:
    """`hadd` of two output files gives one tree that C++ reads through std::vector<T>* (and
    C arrays): the entries of both, in order, with their values."""
    outputs = typed.production.outputs()
    merged = tmp_path / "merged.root"
    finished = subprocess.run(
        [hadd_executable(), "-f", merged, *outputs], capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    rows = ak.concatenate([read_output(path) for path in outputs])
    entries, values, statuses = read_with_cpp(merged)
    assert entries == len(rows) == sum(len(read_output(path)) for path in outputs)
    assert statuses == dict.fromkeys(CPP_BRANCHES, 0)
    for name in CPP_BRANCHES:
        assert values[name] == as_doubles(rows, name), name
    assert values["pf_size"] == ak.to_numpy(ak.num(rows["pf_pt"])).astype(float).tolist()
    assert typenames(merged) == typenames(outputs[0])


@pytest.mark.parametrize("file_format", ["rntuple", "parquet"])
def test_fixed_arrays_in_the_other_formats(
    typed: TypedInputs, tmp_path: Path, file_format: str
) -> None:
    """RNTuple keeps fixed-size arrays as such (`3 * float32`); Parquet, which has no
    fixed-size lists without the Arrow schema, holds them as lists of that many values.
    Either way every value is its source's, and `check` agrees."""
    workdir = Path(
        shutil.copytree(
            typed.production.workdir, tmp_path / "work", ignore=shutil.ignore_patterns("batches")
        )
    )
    output = tmp_path / "out"
    cli(*plan_args(workdir, "--format", file_format, "--output-directory", output))
    cli("run", "--workdir", workdir, "--workers", 1)
    check = cli("check", "--workdir", workdir, "--sample", 10_000)
    assert "all outputs match the plan" in check.stdout
    sources = read_sources(json.loads((output / "provenance.json").read_text()))
    paths = sorted(output.glob("batch*"))
    assert len(paths) == 2
    for path in paths:
        rows = read_output(path)
        if file_format == "rntuple":
            assert str(rows["tau_p3"].type.content) == "3 * float32"
            assert str(rows["tau_cov"].type.content) == "2 * 2 * int32"
            assert_rows_equal_sources(rows, sources, path.name)
            continue
        assert set(ak.to_numpy(ak.num(rows["tau_p3"]))) == {3}
        for file_id in np.unique(ak.to_numpy(rows["bb_source_file"])):
            mine = ak.to_numpy(rows["bb_source_file"]) == file_id
            picked = sources[int(file_id)][ak.to_numpy(rows["bb_source_entry"])[mine]]
            for name in (*FIXED, *SCALARS, *VECTOR_TYPES):
                assert ak.to_list(rows[name][mine]) == ak.to_list(picked[name]), name


MIXED = {  # what the second file changes -> the message's branch, its type there, the first's
    "fixed array as vector": (
        Kinds({**VECTOR_TYPES, "tau_p3": "float"}, {"tau_cov": ("I", (2, 2))}, {}),
        "branch 'tau_p3' is std::vector<float> here but float[3] in the other input files",
    ),
    "vector as counted array": (
        Kinds({n: t for n, t in VECTOR_TYPES.items() if n != "pf_pt"}, TYPED.fixed,
              {"pf_pt": "npf"}),
        "branch 'pf_pt' is float[npf] here but std::vector<float> in the other input files",
    ),
    "vector<Long64_t> for vector<long>": (
        Kinds({**VECTOR_TYPES, LONG_VECTOR: "Long64_t"}, TYPED.fixed, {}),
        "branch 'pf_id' is std::vector<Long64_t> here but std::vector<long> in the other "
        "input files",
    ),
}  # fmt: skip


def mixed_inputs(tmp_path: Path, change: str) -> tuple[Path, Path, str]:
    """Two inputs whose second has the branch types of MIXED[change]: their file list, the
    second file, and the message that names it."""
    kinds, message = MIXED[change]
    first, second = (input_path(tmp_path, d, 1) for d in SAMPLES)
    write_typed(first, typed_columns(0))
    columns = typed_columns(1)
    if "tau_p3" in kinds.vectors:  # three values per entry, now in a std::vector
        columns["tau_p3"] = list(columns["tau_p3"])
    write_typed(second, columns, kinds)
    file_list = tmp_path / "flist.txt"
    file_list.write_text(f"{first}\n{second}\n")
    return file_list, second, message


@pytest.mark.parametrize("change", list(MIXED))
def test_inputs_of_other_branch_types_stop_the_run_naming_file_branch_and_types(
    typed: TypedInputs, tmp_path: Path, change: str
) -> None:
    """Two inputs in one project, the second holding a branch with another type: `run`
    stops with one line naming that file, the branch and both types, and writes nothing."""
    file_list, second, message = mixed_inputs(tmp_path, change)
    workdir = tmp_path / "work"
    cli(*count_args(workdir, file_list, typed.binning))
    cli(*plan_args(workdir, "--batches", 1))
    result = cli("run", "--workdir", workdir, "--workers", 1, expect=2)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {second}: {message}"]
    assert not list((workdir / "batches").glob("batch*.root"))


def test_a_branch_of_other_types_that_the_outputs_drop_does_not_stop_the_run(
    typed: TypedInputs, tmp_path: Path
) -> None:
    """Only the branches the outputs keep must agree: with the differing branch dropped, `run`,
    exported jobs and `status` all go through, and the outputs have no such branch."""
    file_list, _, _ = mixed_inputs(tmp_path, "fixed array as vector")
    for way in ("run", "jobs"):
        workdir = tmp_path / way
        cli(*count_args(workdir, file_list, typed.binning))
        cli(*plan_args(workdir, "--batches", 1, "--drop-branches", "tau_p3"))
        if way == "run":
            cli("run", "--workdir", workdir, "--workers", 1)
        else:
            jobs = tmp_path / "exported"
            exported = cli("export-jobs", "--workdir", workdir, "--directory", jobs)
            for listed in ("read-jobs.txt", "write-jobs.txt"):
                for job in (jobs / listed).read_text().split():
                    cli("make", "--spec", jobs / "spec.json", "--job", job)
            status = cli("status", "--workdir", workdir).stdout
            assert re.search(r"read │\s+0 │\s+0 │\s+0 │\s+2 │\s+0 │", status), status
            assert "failed read unit" not in status, exported.stdout
        cli("check", "--workdir", workdir)
        (output,) = (workdir / "batches").glob("batch*.root")
        with uproot.open(output) as handle:
            names = set(handle[TREE].keys())
        assert "tau_p3" not in names and "tau_cov" in names


@pytest.mark.parametrize("vectors", [VECTOR_TYPES, {}], ids=["with vectors", "counted only"])
def test_counters_keep_their_names_and_types(
    typed: TypedInputs, tmp_path: Path, vectors: dict[str, str]
) -> None:
    """NanoAOD-style unsigned counters (`nMuon/i` of `Muon_pt`) and a counter whose name does
    not follow its arrays' (`nJets/i` of `jet_pt` and `jet_eta`) come out as they went in, with
    or without std::vector branches beside them: C++ that binds `unsigned int` to them reads
    the outputs, and every value is its source's."""
    kinds = Kinds(
        vectors,
        TYPED.fixed,
        {"Muon_pt": "nMuon", "jet_pt": "nJets", "jet_eta": "nJets"},
        {"nMuon": "i", "nJets": "i"},
    )
    paths = [input_path(tmp_path, d, 1) for d in SAMPLES]
    for seed, path in enumerate(paths):
        columns = typed_columns(seed)
        columns["jet_pt"] = [np.asarray(pt, np.float32) for pt in columns["pf_pt"]]
        columns["jet_eta"] = [np.asarray(pt, np.float32) / 7 for pt in columns["pf_pt"]]
        columns["Muon_pt"] = [np.asarray(dz[:2], np.float32) for dz in columns["pf_dz"]]
        write_typed(path, columns, kinds)
    file_list = tmp_path / "flist.txt"
    file_list.write_text("".join(f"{path}\n" for path in paths))
    workdir = tmp_path / "work"
    cli(*count_args(workdir, file_list, typed.binning))
    cli(*plan_args(workdir, "--batches", 1))
    cli("run", "--workdir", workdir, "--workers", 1)
    cli("check", "--workdir", workdir)
    (output,) = (workdir / "batches").glob("batch*.root")
    with uproot.open(output) as handle:
        tree = handle[TREE]
        assert {tree[n].typename for n in ("nMuon", "nJets")} == {"uint32_t"}
        assert tree["jet_pt"].typename == "float[]" and tree["jet_eta"].count_branch.name == "nJets"
        assert "njet_pt" not in tree and "njet_eta" not in tree
        rows = tree.arrays()
    provenance = json.loads((workdir / "batches" / "provenance.json").read_text())
    assert_rows_equal_sources(rows, read_sources(provenance), output.name)
    frame = ROOT.RDataFrame(TREE, str(output))
    counts = frame.Take["unsigned int"]("nJets").GetValue()
    assert [int(n) for n in counts] == ak.num(rows["jet_pt"]).tolist()


def write_with_rows_of_three(path: Path, columns: dict[str, Any]) -> None:
    """The scalars of `columns` and `x[n][3]/F`, a counted array of fixed-size items, which
    uproot reads but no writer here copies."""
    handle, tree, buffers = tree_of_scalars(path)
    count, rows = np.zeros(1, np.int32), np.zeros((8, 3), np.float32)
    tree.Branch("n", count, "n/I")
    tree.Branch("x", rows, "x[n][3]/F")
    for entry in range(ENTRIES):
        for name in SCALARS:
            buffers[name][...] = columns[name][entry]
        count[0] = entry % 4
        rows[...] = entry
        tree.Fill()
    handle.Write()
    handle.Close()


def test_a_branch_that_cannot_be_copied_is_refused_at_plan_and_can_be_dropped(
    typed: TypedInputs, tmp_path: Path
) -> None:
    """`x[n][3]` cannot be copied: `plan` says so in one line naming the branch, its type and
    the option that leaves it out; with `--drop-branches x` the production goes through."""
    paths = [input_path(tmp_path, d, 1) for d in SAMPLES]
    for seed, path in enumerate(paths):
        write_with_rows_of_three(path, typed_columns(seed))
    file_list = tmp_path / "flist.txt"
    file_list.write_text("".join(f"{path}\n" for path in paths))
    workdir = tmp_path / "work"
    cli(*count_args(workdir, file_list, typed.binning))
    refused = cli(*plan_args(workdir, "--batches", 1), expect=2)
    assert refused.stderr.strip().splitlines() == [
        "error: the input files: branch 'x' has type 'float[][3]', which cannot be copied; "
        "leave it out of the outputs with --drop-branches 'x'"
    ]
    cli(*plan_args(workdir, "--batches", 1, "--drop-branches", "x"))
    cli("run", "--workdir", workdir, "--workers", 1)
    cli("check", "--workdir", workdir)
    (output,) = (workdir / "batches").glob("batch*.root")
    with uproot.open(output) as handle:
        assert "x" not in handle[TREE] and "tau_pt" in handle[TREE]


def test_batch_jobs_refuse_an_input_of_other_types(typed: TypedInputs, tmp_path: Path) -> None:
    """An exported read job checks its input against the layout in spec.json and fails naming
    file, branch and types; a record of a read job that did not check (as older versions left
    them) is folded in by `status` as failed, with the same reason."""
    from balanced_batches.io.trees import branch_layout
    from balanced_batches.rows import layout_to_json

    file_list, second, message = mixed_inputs(tmp_path, "fixed array as vector")
    workdir, jobs = tmp_path / "work", tmp_path / "jobs"
    cli(*count_args(workdir, file_list, typed.binning))
    cli(*plan_args(workdir, "--batches", 1))
    cli("export-jobs", "--workdir", workdir, "--directory", jobs)
    spec = jobs / "spec.json"
    cli("make", "--spec", spec, "--job", 0)
    failed = cli("make", "--spec", spec, "--job", 1, expect=2)
    assert f"error: {second}: {message}" in failed.stderr.splitlines()
    first = file_list.read_text().split()[0]
    assert json.loads((jobs / "records" / "job-0.json").read_text())["path"] == first
    record = json.loads((jobs / "records" / "job-1.json").read_text())
    assert (record["status"], record["error"]) == ("failed", f"{second}: {message}")

    with uproot.open(second) as handle:
        layout = layout_to_json(branch_layout(handle[TREE]))
    unchecked = {"job": 1, "kind": "read", "unit": 1, "status": "done", "rows": 1, "parts": 1}
    (jobs / "records" / "job-1.json").write_text(json.dumps({**unchecked, "layout": layout}))
    status = cli("status", "--workdir", workdir).stdout
    assert "failed read unit 1" in status and "read job 1: branch 'tau_p3' is std::" in status
