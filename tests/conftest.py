"""Shared fixtures of the integration tests: one synthetic dataset and one finished pipeline run.

Both are session-scoped, so the dataset is generated and the reference production made once.
Helpers here recompute what the package computes (region counts, provenance look-ups) with
uproot and numpy straight from the rules of ORIGINAL-ALGORITHM.md, never with the package's
own functions, so that the tests can disagree with it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml
from typer.testing import CliRunner

from balanced_batches.cli import app
from faults_util import output_digests

# the original configuration, shipped with the examples
REFERENCE = Path(__file__).resolve().parents[1] / "examples" / "prod_Phase2_v2"
PROCESS_TYPES = REFERENCE / "process_types.yaml"
BINNING = REFERENCE / "binning.yaml"
CAMPAIGN = "prod_Phase2_v2"
TREE = "taus"
PROVENANCE_BRANCHES = (
    "bb_process_key",
    "bb_region",
    "bb_source_file",
    "bb_source_entry",
    "bb_batch",
)
EXECUTABLE = Path(sys.executable).parent / "balanced-batches"
# what provenance.json must record (it may hold more, such as when the plan was made)
PROVENANCE_KEYS = (
    "version",
    "process_keys",
    "regions",
    "source_files",
    "seed",
    "events_per_batch_type",
    "batches",
    "batches_per_file",
)

# The reference production: every test that compares outputs uses these settings.
PILEUP = "PU200"
PER_BATCH = 2
N_BATCHES = 3
SEED = 7
REFERENCE_FILES = ("batch0.root", "batch1.root", "batch2.root")  # its output files


# -- the command line ---------------------------------------------------------------------------


def python_output(*arguments: str, timeout: float = 60) -> str:
    """What `python ARGUMENTS` prints in a fresh interpreter, which must succeed."""
    finished = subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, timeout=timeout
    )
    assert finished.returncode == 0, finished.stderr
    return finished.stdout.strip()


def cli(*args: object, expect: int | None = 0) -> Any:
    """Runs `balanced-batches ARGS` in this process; checks the exit code unless expect=None."""
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    # the CLI points the package's log handler at the runner's stream, closed from now on
    logging.getLogger("balanced_batches").handlers.clear()
    if expect is not None:
        assert result.exit_code == expect, (
            f"balanced-batches {' '.join(map(str, args))}: exit {result.exit_code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
        )
    return result


def count_args(workdir: Path, file_list: Path, binning: Path = BINNING) -> list[object]:
    """Arguments of the original-style `count` over a file list, in this process, no Dask."""
    return [
        "count",
        "--workdir",
        workdir,
        "--prod-campaign",
        CAMPAIGN,
        "--process-types",
        PROCESS_TYPES,
        "--pt-abseta-bins",
        binning,
        "--input-file-list",
        file_list,
        "--workers",
        1,
    ]


def project_yaml(path: Path, extra: str = "") -> Path:
    """A project YAML with the reference's processes, binning and campaign, plus `extra`."""
    path.write_text(
        f"processes: {PROCESS_TYPES}\nbinning: {BINNING}\ninputs: {{campaign: {CAMPAIGN}}}\n"
        f"{extra}\n"
    )
    return path


def reference_plan_args(
    workdir: Path, *, batches: int = N_BATCHES, seed: int = SEED
) -> list[object]:
    """`plan` arguments of the reference production (or of one with other batches or seed)."""
    return [
        "plan",
        "--workdir",
        workdir,
        "--pileup",
        PILEUP,
        "--events-per-batch-type",
        PER_BATCH,
        "--batches",
        batches,
        "--seed",
        seed,
    ]


@dataclass(frozen=True)
class Production:
    """A working directory whose plan has been made (and usually run)."""

    workdir: Path

    @property
    def outdir(self) -> Path:
        """The output directory (the default, `<workdir>/batches`)."""
        return self.workdir / "batches"

    @property
    def provenance(self) -> dict[str, Any]:
        """The output directory's provenance.json."""
        data: dict[str, Any] = json.loads((self.outdir / "provenance.json").read_text())
        return data

    def outputs(self, extension: str = ".root") -> list[Path]:
        """Output files by index: batch0, batch1, ..."""
        paths = self.outdir.glob(f"batch*{extension}")
        return sorted(paths, key=lambda p: int(re.fullmatch(r"batch(\d+)\..*", p.name)[1]))  # type: ignore[index]


def assert_same_bytes(made: Sequence[Path], reference: Production) -> None:
    """`made` are the reference's output files, name for name and byte for byte."""
    expected = reference.outputs()
    assert [p.name for p in made] == [p.name for p in expected]
    assert made
    for ours, theirs in zip(made, expected, strict=True):
        assert ours.read_bytes() == theirs.read_bytes(), ours.name


def produce(
    workdir: Path,
    file_list: Path,
    plan_args: Iterable[object] = (),
    *,
    binning: Path = BINNING,
    run_args: Iterable[object] | None = ("--workers", 1),
) -> Production:
    """count, plan (reference settings unless `plan_args` are given) and run in a fresh workdir."""
    cli(*count_args(workdir, file_list, binning))
    cli(*(list(plan_args) or reference_plan_args(workdir)))
    if run_args is not None:
        cli("run", "--workdir", workdir, *run_args)
    return Production(workdir)


# -- independent recomputation ------------------------------------------------------------------


def bin_edges(triples: list[list[float]]) -> np.ndarray:
    """Concatenated `arange(start, stop, step)` of every triple plus the last stop."""
    parts = [np.arange(start, stop, step) for start, stop, step in triples]
    return np.concatenate([*parts, [triples[-1][1]]])


def bin_masks(values: np.ndarray, edges: np.ndarray) -> list[np.ndarray]:
    """Membership of every bin: edge[j] <= x < edge[j+1], the last bin x >= last edge."""
    upper = [*edges[1:], np.inf]
    return [(values >= low) & (values < high) for low, high in zip(edges, upper, strict=True)]


def type_masks(index: np.ndarray, kind: np.ndarray) -> dict[str, np.ndarray]:
    """The four candidate types of the original workflow."""
    matched = index >= 0
    return {
        "electron": matched & ((kind == 1) | (kind == 3)),
        "muon": matched & ((kind == 2) | (kind == 4)),
        "jet": index == -1,
        "genuine": matched & (kind == 5),
    }


def region_counts(columns: Mapping[str, np.ndarray], binning: Path) -> dict[str, int]:
    """Candidates in every region `<type>_absetabin<i>_ptbin<j>` of tau_pt/tau_eta/genLepton_*."""
    spec = yaml.safe_load(binning.read_text())
    pt = np.asarray(columns["tau_pt"], dtype=np.float64)
    abseta = np.abs(np.asarray(columns["tau_eta"], dtype=np.float64))
    pt_bins = bin_masks(pt, bin_edges(spec["pt"]))
    eta_bins = bin_masks(abseta, bin_edges(spec["abseta"]))
    types = type_masks(
        np.asarray(columns["genLepton_index"]), np.asarray(columns["genLepton_kind"])
    )
    return {
        f"{name}_absetabin{i}_ptbin{j}": int(np.count_nonzero(is_type & in_eta & in_pt))
        for name, is_type in types.items()
        for i, in_eta in enumerate(eta_bins)
        for j, in_pt in enumerate(pt_bins)
    }


def region_of_rows(columns: Mapping[str, np.ndarray], binning: Path) -> np.ndarray:
    """Region name of every candidate ('' for none)."""
    n = len(columns["tau_pt"])
    names = np.full(n, "", dtype=object)
    spec = yaml.safe_load(binning.read_text())
    pt_bins = bin_masks(np.asarray(columns["tau_pt"], np.float64), bin_edges(spec["pt"]))
    eta_bins = bin_masks(
        np.abs(np.asarray(columns["tau_eta"], np.float64)), bin_edges(spec["abseta"])
    )
    types = type_masks(
        np.asarray(columns["genLepton_index"]), np.asarray(columns["genLepton_kind"])
    )
    for name, is_type in types.items():
        for i, in_eta in enumerate(eta_bins):
            for j, in_pt in enumerate(pt_bins):
                names[is_type & in_eta & in_pt] = f"{name}_absetabin{i}_ptbin{j}"
    return names


def read_selection_columns(path: Path | str) -> dict[str, np.ndarray]:
    """The four branches the regions depend on."""
    with uproot.open(path) as handle:
        arrays = handle[TREE].arrays(
            ["tau_pt", "tau_eta", "genLepton_index", "genLepton_kind"], library="np"
        )
    return dict(arrays)


def write_ttree(path: Path, columns: dict[str, Any], name: str = TREE) -> None:
    """A TTree (`file[name] = columns` would make an RNTuple in this uproot version)."""
    types = {
        key: values.dtype if isinstance(values, np.ndarray) else values.type.content
        for key, values in columns.items()
    }
    with uproot.recreate(path) as handle:
        tree = handle.mktree(name, types)
        if len(next(iter(columns.values()))):
            tree.extend(columns)


def catalog_name(path: str) -> str:
    """The original rule: the path from the campaign on, without `/crab_output`."""
    return path[path.index(CAMPAIGN) :].replace("/crab_output", "")


@functools.cache
def process_types() -> dict[str, Any]:
    """The reference process_types.yaml, as plain YAML."""
    data: dict[str, Any] = yaml.safe_load(PROCESS_TYPES.read_text())
    return data


def process_of(name: str) -> str | None:
    """The first process of process_types.yaml whose regex occurs in the name."""
    for process, spec in process_types().items():
        if re.search(spec["regex"], name):
            return str(process)
    return None


def pileup_of(name: str) -> str | None:
    """The first of NoPU, PU140, PU200 in the name."""
    return next((p for p in ("NoPU", "PU140", "PU200") if p in name), None)


def active_types(process: str) -> list[str]:
    """active_types of a process in process_types.yaml."""
    return list(process_types()[process]["active_types"])


def expected_counts_json(paths: Iterable[str], binning: Path = BINNING) -> dict[str, Any]:
    """counts.json as the original wrote it, recomputed from the files."""
    expected: dict[str, Any] = {}
    for path in paths:
        name = catalog_name(path)
        entry: dict[str, Any] = {
            "path": path,
            "process": process_of(name),
            "pileup": pileup_of(name),
        }
        entry.update(region_counts(read_selection_columns(path), binning))
        expected[name] = entry
    return expected


# -- outputs ------------------------------------------------------------------------------------


def read_output(path: Path) -> ak.Array:
    """Every branch (or column) of an output file."""
    if path.suffix == ".parquet":
        return ak.from_parquet(path)
    with uproot.open(path) as handle:
        return handle[TREE].arrays()


def read_sources(provenance: Mapping[str, Any]) -> dict[int, ak.Array]:
    """Every entry of every input file the provenance names, by catalog file id."""
    sources = {}
    for file_id, path in provenance["source_files"].items():
        with uproot.open(path) as handle:
            sources[int(file_id)] = handle[TREE].arrays()
    return sources


def assert_rows_equal_sources(
    rows: ak.Array, sources: Mapping[int, ak.Array], label: str = ""
) -> None:
    """Every data branch of every row equals its source entry, jagged ones element by element."""
    source_file = ak.to_numpy(rows["bb_source_file"])
    source_entry = ak.to_numpy(rows["bb_source_entry"])
    for file_id in np.unique(source_file):
        mine = source_file == file_id
        source = sources[int(file_id)]
        assert source_entry[mine].min() >= 0 and source_entry[mine].max() < len(source)
        picked = source[source_entry[mine]]
        for name in source.fields:
            assert ak.array_equal(rows[name][mine], picked[name], dtype_exact=True), (
                f"{label}: branch {name!r} of rows from file {file_id} differs from the source"
            )


def row_keys(rows: ak.Array, provenance: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """(batch, process key, region name, source path, source entry) of every row."""
    keys = provenance["process_keys"]
    regions = provenance["regions"]
    files = provenance["source_files"]
    return [
        (int(b), keys[int(k)], regions[int(r)], files[str(int(f))], int(e))
        for b, k, r, f, e in zip(
            *(
                ak.to_numpy(rows[name])
                for name in (
                    "bb_batch",
                    "bb_process_key",
                    "bb_region",
                    "bb_source_file",
                    "bb_source_entry",
                )
            ),
            strict=True,
        )
    ]


def assert_same_arrays(a: ak.Array, b: ak.Array, label: str = "") -> None:
    """Same fields, and every field equal, type included."""
    assert sorted(a.fields) == sorted(b.fields), label
    assert len(a) == len(b), label
    for name in a.fields:
        assert ak.array_equal(a[name], b[name], dtype_exact=True), f"{label}: {name!r} differs"


def assert_same_outputs(first: Production, second: Production) -> None:
    """Both productions wrote the same files with identical arrays (row order included)."""
    paths = first.outputs()
    assert [p.name for p in paths] == [p.name for p in second.outputs()]
    assert paths
    for path in paths:
        assert_same_arrays(read_output(path), read_output(second.outdir / path.name), path.name)


def assert_same_provenance(first: Production, second: Production) -> None:
    """The provenance.json files agree on what the provenance branches mean and the plan."""
    for production in (first, second):
        assert (production.outdir / "provenance.json").is_file(), (
            f"{production.outdir}: no provenance.json, so bb_source_file ids name no file"
        )
    one, two = first.provenance, second.provenance
    assert one["config"]["plan"] == two["config"]["plan"]
    for key in PROVENANCE_KEYS:
        assert one[key] == two[key], key


def tree_digest(directory: Path) -> dict[str, str]:
    """sha256 of every file below a directory; of its SQL content for a SQLite database.

    A database's bytes change when SQLite merely checkpoints its write-ahead log, so its
    content is compared instead, and the transient -wal/-shm files are left out.
    """
    if not directory.exists():
        return {}
    digests = {}
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.name.endswith(("-wal", "-shm")):
            continue
        if path.suffix == ".sqlite":
            connection = sqlite3.connect(path)
            data = "\n".join(connection.iterdump()).encode()
            connection.close()
        else:
            data = path.read_bytes()
        digests[str(path.relative_to(directory))] = hashlib.sha256(data).hexdigest()
    return digests


# -- session fixtures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """The generated dataset: its file list and the input paths in list order."""

    file_list: Path
    paths: tuple[str, ...]


def copy_dataset(dataset: Dataset, target: Path) -> tuple[Path, list[str]]:
    """A private copy of the dataset (modification times kept) and its file list."""
    source = dataset.file_list.parent
    shutil.copytree(source, target)
    paths = [str(target / Path(p).relative_to(source)) for p in dataset.paths]
    file_list = target / "flist.txt"
    file_list.write_text("".join(f"{p}\n" for p in paths))
    return file_list, paths


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """6 PU200 samples (DY, TT, QCD, ElecGun, MuonGun, ggH) x 2 files x 300 candidates."""
    root = tmp_path_factory.mktemp("dataset")
    cli(
        "generate",
        root,
        "--files-per-sample",
        2,
        "--entries-per-file",
        300,
        "--seed",
        3,
        "--max-samples",
        6,
        "--workers",
        1,
    )
    file_list = root / "flist.txt"
    paths = tuple(file_list.read_text().split())
    assert len(paths) == 12
    return Dataset(file_list, paths)


@pytest.fixture(scope="session")
def counted(tmp_path_factory: pytest.TempPathFactory, dataset: Dataset) -> Path:
    """A working directory where `count` has run over the dataset (and nothing else)."""
    workdir = tmp_path_factory.mktemp("counted") / "work"
    cli(*count_args(workdir, dataset.file_list))
    return workdir


@pytest.fixture
def counted_copy(counted: Path, tmp_path: Path) -> Path:
    """A private copy of the counted working directory."""
    return Path(shutil.copytree(counted, tmp_path / "work"))


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, dataset: Dataset) -> Production:
    """The reference production: PU200, N=2, 3 batches, seed 7, run in this process."""
    return produce(tmp_path_factory.mktemp("reference") / "work", dataset.file_list)


@pytest.fixture(scope="session")
def in_format(
    tmp_path_factory: pytest.TempPathFactory, dataset: Dataset
) -> Callable[[str], Production]:
    """The reference production in another output format (`rntuple`, `parquet`), made once each."""
    made: dict[str, Production] = {}

    def production(file_format: str) -> Production:
        if file_format not in made:
            workdir = tmp_path_factory.mktemp(file_format) / "work"
            plan = [*reference_plan_args(workdir), "--format", file_format]
            made[file_format] = produce(workdir, dataset.file_list, plan)
        return made[file_format]

    return production


@pytest.fixture(scope="session")
def reference_outputs(reference: Production) -> dict[str, ak.Array]:
    """Rows of every reference output file, by file name."""
    return {path.name: read_output(path) for path in reference.outputs()}


def totals_by_key(counts: Mapping[str, Any], pileup: str) -> dict[str, dict[str, int]]:
    """Per process key (`<process>_<pileup>`, or the process for 'none'), each region's total."""
    totals: dict[str, dict[str, int]] = {}
    for entry in counts.values():
        if entry["process"] is None or (
            pileup not in ("all", "none") and entry["pileup"] != pileup
        ):
            continue
        key = entry["process"] if pileup == "none" else f"{entry['process']}_{entry['pileup']}"
        sums = totals.setdefault(key, {})
        for name, value in entry.items():
            if name not in ("path", "process", "pileup"):
                sums[name] = sums.get(name, 0) + value
    return totals


def planned_streams(
    totals: Mapping[str, Mapping[str, int]], pileup: str
) -> dict[tuple[str, str], int]:
    """(process key, region) -> candidates, for active regions with at least one candidate."""
    streams = {}
    for key, regions in totals.items():
        process = key if pileup == "none" else key.rsplit("_", 1)[0]
        for region, n in regions.items():
            if n > 0 and region.split("_absetabin")[0] in active_types(process):
                streams[key, region] = n
    return streams


@pytest.fixture(scope="session")
def expected_counts(dataset: Dataset) -> dict[str, Any]:
    """counts.json of the dataset, recomputed here from the files."""
    return expected_counts_json(dataset.paths)


# -- fixtures of the fault tests (test_faults_*.py) --------------------------------------------


@pytest.fixture(scope="module")
def reference_digests(reference: Production) -> dict[str, str]:
    """sha256 of every output of the uninterrupted reference production."""
    digests = output_digests(reference.outdir)
    assert tuple(digests) == REFERENCE_FILES
    return digests


@pytest.fixture
def planned(counted_copy: Path) -> Path:
    """A private working directory holding the reference plan, nothing run yet."""
    cli(*reference_plan_args(counted_copy))
    return counted_copy


# -- a Dask cluster on 127.0.0.1 -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a Dask scheduler with two single-threaded worker processes."""
    logs = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{_free_port()}"
    port = address.rsplit(":", 1)[1]
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str, log: str) -> None:
        with (logs / log).open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [str(Path(sys.executable).parent / "dask"), *args],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard", log="s.log")
        start(
            "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard", log="w.log"
        )
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        from distributed import Client

        try:
            with Client(address, timeout="5s") as client:
                client.shutdown()
        except OSError:
            pass  # the scheduler never came up or is gone already
        for process in reversed(processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.terminate()
                process.wait(timeout=20)
