"""io.ttree_writer: std::vector<T> branches as ROOT writes them, the rest as uproot writes them.

A tree written by ROOT itself (PyROOT) is the reference: its branch types, its TBranchElement and
TLeafElement members, its entries' bytes and its StreamerInfo records are compared with ours. The
same values written with our writer are read back by uproot and, in a process of its own whose
stderr is checked, by ROOT's C++ readers (tests/ttree_root_reader.py); hadd merges two outputs.
"""

from __future__ import annotations

import datetime
import itertools
import json
import subprocess
import sys
import types
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot
from hypothesis import given, settings
from hypothesis import strategies as st

from balanced_batches.io import _streamers
from balanced_batches.io._ttree_cascade import class_checksum
from balanced_batches.io.ttree_writer import BranchKind, BranchType, branch_types, mktree

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the PyPI build warns that it is an alpha release
    ROOT = pytest.importorskip("ROOT")

ROOT.gROOT.SetBatch(True)

TREE = "taus"
ENTRIES = 240
READER = Path(__file__).with_name("ttree_root_reader.py")
HADD = Path(ROOT.__file__).parent / "bin" / "hadd"
COMPRESSIONS = {
    "none": None,
    "zlib": uproot.ZLIB(4),
    "lz4": uproot.LZ4(1),
    "zstd": uproot.ZSTD(5),
}
# Where extend calls split the entries: an empty call first, then baskets of uneven sizes, more
# than the 10 that uproot first makes room for (so that the tree's metadata moves once).
CHUNKS = [0, 0, 7, 20, 21, 45, 60, 80, 100, 130, 150, 170, 190, 215, 240]


@dataclass(frozen=True)
class Spec:
    """One branch of the reference tree: how ROOT declares it and what it holds."""

    name: str
    kind: BranchKind
    dtype: str  # numpy type of one value
    ctype: str  # C++ type of one value (for a vector: as its class name spells it)
    code: str = ""  # ROOT's leaf type code (not for vectors)
    counter: str | None = None
    shape: tuple[int, ...] = ()


SPECS = (
    Spec("pf_pt", "vector", "float32", "float"),
    Spec("pf_charge", "vector", "int32", "int"),
    Spec("pf_dz", "vector", "float64", "double"),
    Spec("pf_valid", "vector", "bool", "bool"),
    Spec("pf_id", "vector", "int64", "Long64_t"),
    Spec("pf_hits", "vector", "uint8", "unsigned char"),
    Spec("pf_layer", "vector", "uint16", "unsigned short"),
    Spec("nsv", "scalar", "int32", "Int_t", "I"),
    Spec("sv_mass", "counted", "float32", "Float_t", "F", counter="nsv"),
    Spec("sv_ntracks", "counted", "int32", "Int_t", "I", counter="nsv"),
    Spec("p4", "fixed", "float32", "Float_t", "F", shape=(4,)),
    Spec("cov", "fixed", "float64", "Double_t", "D", shape=(2, 2)),
    Spec("tau_pt", "scalar", "float32", "Float_t", "F"),
    Spec("weight", "scalar", "float64", "Double_t", "D"),
    Spec("charge", "scalar", "int32", "Int_t", "I"),
    Spec("run", "scalar", "uint32", "UInt_t", "i"),
    Spec("shift", "scalar", "int64", "Long64_t", "L"),
    Spec("evt", "scalar", "uint64", "ULong64_t", "l"),
    Spec("is_tau", "scalar", "bool", "Bool_t", "O"),
    Spec("decay_mode", "scalar", "int8", "Char_t", "B"),
    Spec("n_hits", "scalar", "uint8", "UChar_t", "b"),
    Spec("layer", "scalar", "int16", "Short_t", "S"),
    Spec("station", "scalar", "uint16", "UShort_t", "s"),
)
VECTORS = [spec for spec in SPECS if spec.kind == "vector"]
JAGGED = [spec for spec in SPECS if spec.kind in ("vector", "counted")]
Jagged = tuple[np.ndarray, np.ndarray]  # offsets (from 0), content


def random_values(rng: np.random.Generator, dtype: str, size: int | tuple[int, ...]) -> np.ndarray:
    """Values of a numpy type that doubles hold exactly (ROOT's readers report doubles)."""
    if dtype == "bool":
        return rng.integers(0, 2, size).astype(bool)
    if dtype.startswith("float"):
        return rng.normal(0.0, 50.0, size).astype(dtype)
    limits = np.iinfo(dtype)
    return rng.integers(max(limits.min, -(2**50)), min(limits.max, 2**50), size, dtype=dtype)


def make_truth(seed: int, entries: int = ENTRIES) -> dict[str, Any]:
    """Values for every branch: numpy arrays, or (offsets, content) for jagged ones."""
    rng = np.random.default_rng(seed)
    truth: dict[str, Any] = {}
    counted_sizes = rng.integers(0, 5, entries)
    for spec in SPECS:
        if spec.kind in ("scalar", "fixed"):
            truth[spec.name] = random_values(rng, spec.dtype, (entries, *spec.shape))
            continue
        sizes = counted_sizes if spec.kind == "counted" else rng.integers(0, 7, entries)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        truth[spec.name] = (offsets, random_values(rng, spec.dtype, int(offsets[-1])))
    truth["nsv"] = counted_sizes.astype(np.int32)
    return truth


def entry_lists(values: Any) -> list[Any]:
    """The entries of a branch's values as Python lists."""
    if isinstance(values, tuple):
        offsets, content = values
        return [content[a:b].tolist() for a, b in itertools.pairwise(offsets)]
    return [np.asarray(v).tolist() for v in values]


def write_with_root(path: Path, truth: dict[str, Any]) -> None:
    """The reference tree, filled entry by entry through PyROOT as analysis code would."""
    handle = ROOT.TFile(str(path), "RECREATE")
    tree = ROOT.TTree(TREE, TREE)
    buffers: dict[str, Any] = {}
    for spec in SPECS:
        if spec.kind == "vector":
            buffers[spec.name] = ROOT.std.vector[spec.ctype]()
            tree.Branch(spec.name, buffers[spec.name])
            continue
        size = 64 if spec.kind == "counted" else int(np.prod(spec.shape))
        buffers[spec.name] = np.zeros(size, dtype=spec.dtype)
        dims = "".join(f"[{n}]" for n in spec.shape)
        dims = f"[{spec.counter}]" if spec.counter else dims
        tree.Branch(spec.name, buffers[spec.name], f"{spec.name}{dims}/{spec.code}")
    for entry in range(ENTRIES):
        for spec in SPECS:
            values = truth[spec.name]
            if isinstance(values, tuple):
                offsets, content = values
                items = content[offsets[entry] : offsets[entry + 1]]
                if spec.kind == "vector":
                    vector = buffers[spec.name]
                    vector.clear()
                    for item in items.tolist():
                        vector.push_back(item)
                else:
                    buffers[spec.name][: len(items)] = items
            else:
                buffers[spec.name][:] = np.ravel(values[entry])
        tree.Fill()
    handle.Write()
    handle.Close()


@contextmanager
def fixed_time() -> Iterator[None]:
    """uproot stamps the current time into keys; fixed here, as the project's writers do."""

    class Stamp(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:  # type: ignore[override]
            return datetime.datetime(2000, 1, 1)

    modules = [uproot.writing._cascade, uproot.writing._cascadetree, uproot.writing.writable]
    saved = [module.datetime for module in modules]
    for module in modules:
        module.datetime = types.SimpleNamespace(datetime=Stamp)
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.datetime = original


def chunk(values: Any, start: int, stop: int, as_awkward: bool) -> Any:
    """Entries [start, stop) of a branch's values, as extend takes them (offsets not from 0)."""
    if not isinstance(values, tuple):
        return values[start:stop]
    offsets, content = values
    if as_awkward:
        return ak.unflatten(content, np.diff(offsets))[start:stop]
    return offsets[start : stop + 1], content


def fixed_uuid() -> uuid.UUID:
    """The file's UUID, fixed as the project's writers fix it."""
    return uuid.UUID(int=1)


def write_ours(
    path: Path, types_: list[BranchType], truth: dict[str, Any], compression: Any
) -> None:
    """The truth written with our writer in the extend calls of CHUNKS, inputs varied by call."""
    with (
        fixed_time(),
        uproot.recreate(path, compression=compression, uuid_function=fixed_uuid) as f,
        mktree(f, TREE, types_, title=TREE) as tree,
    ):
        for k, (start, stop) in enumerate(itertools.pairwise(CHUNKS)):
            data = {name: chunk(v, start, stop, k % 2 == 1) for name, v in truth.items()}
            if k % 2 == 1:
                del data["nsv"]  # derived from the sizes of sv_mass and sv_ntracks
            tree.extend(data)
        assert tree.num_entries == ENTRIES


@dataclass(frozen=True)
class Files:
    """The reference, our outputs in every compression, two merges by hadd, and the truth."""

    reference: Path
    ours: dict[str, Path]
    merged: Path
    cloned: Path
    hadd_output: str
    truth: dict[str, Any]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    base = tmp_path_factory.mktemp("ttree-writer")
    truth = make_truth(1)
    reference = base / "reference.root"
    write_with_root(reference, truth)
    with uproot.open(reference) as handle:
        types_ = branch_types(handle[TREE])
    ours = {}
    for label, compression in COMPRESSIONS.items():
        ours[label] = base / label / "taus.root"
        ours[label].parent.mkdir()
        write_ours(ours[label], types_, truth, compression)
    merged, cloned = base / "merged.root", base / "cloned.root"
    # -O: ROOT reads every entry and writes baskets of its own
    merge = [HADD, "-O", "-f505", merged, ours["lz4"], ours["zlib"]]
    # -fk: ROOT copies our baskets as they are (TTreeCloner), both files in zstd
    clone = [HADD, "-fk", cloned, ours["zstd"], ours["zstd"]]
    hadd = [subprocess.run(c, capture_output=True, text=True, check=True) for c in (merge, clone)]
    output = "".join(run.stdout + run.stderr for run in hadd)
    return Files(reference, ours, merged, cloned, output, truth)


@dataclass(frozen=True)
class RootReads:
    """What ROOT's readers saw in each file, and what ROOT printed on stderr meanwhile."""

    seen: dict[str, Any]
    stderr: str


@pytest.fixture(scope="module")
def root_reads(files: Files, tmp_path_factory: pytest.TempPathFactory) -> RootReads:
    schema = tmp_path_factory.mktemp("schema") / "schema.json"
    schema.write_text(json.dumps([spec.__dict__ for spec in SPECS]))
    paths = [files.reference, *files.ours.values(), files.merged, files.cloned]
    finished = subprocess.run(
        [sys.executable, READER, schema, TREE, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    return RootReads(json.loads(finished.stdout), finished.stderr)


def flat_and_sizes(values: Any) -> tuple[list[float], list[float]]:
    """What a ROOT reader reports for a branch: all values and each entry's size, as floats."""
    if isinstance(values, tuple):
        offsets, content = values
        return content.astype(float).tolist(), np.diff(offsets).astype(float).tolist()
    return np.asarray(values).astype(float).ravel().tolist(), []


def doubled(truth: dict[str, Any]) -> dict[str, Any]:
    """The truth twice over, as hadd of two outputs holds it."""
    result: dict[str, Any] = {}
    for name, values in truth.items():
        if isinstance(values, tuple):
            offsets, content = values
            result[name] = (
                np.concatenate([offsets, offsets[1:] + offsets[-1]]),
                np.concatenate([content, content]),
            )
        else:
            result[name] = np.concatenate([values, values])
    return result


def expected_in(files: Files, label: str) -> dict[str, Any]:
    """The values a file holds."""
    return doubled(files.truth) if label in MERGED else files.truth


MERGED = ["merged", "cloned"]
LABELS = ["reference", *COMPRESSIONS, *MERGED]


def path_of(files: Files, label: str) -> Path:
    """A file by label."""
    named = {"reference": files.reference, "merged": files.merged, "cloned": files.cloned}
    return {**named, **files.ours}[label]


# -- the types ---------------------------------------------------------------------------------


def test_branch_types_of_a_root_written_tree(files: Files) -> None:
    expected = [
        BranchType(
            spec.name,
            spec.kind,
            np.dtype(spec.dtype),
            counter=spec.counter,
            shape=spec.shape,
            element=spec.ctype if spec.kind == "vector" else None,
        )
        for spec in SPECS
    ]
    with uproot.open(files.reference) as handle:
        assert branch_types(handle[TREE]) == expected
    with uproot.open(files.ours["zstd"]) as handle:
        assert branch_types(handle[TREE]) == expected


@pytest.fixture(scope="module")
def unwritable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tree per branch of a type that cannot be written unchanged, written by ROOT."""
    path = tmp_path_factory.mktemp("unwritable") / "unwritable.root"
    handle = ROOT.TFile(str(path), "RECREATE")
    keep = []
    for name, declare in {
        "label": lambda t: t.Branch("label", ROOT.std.string("tau")),
        "nested": lambda t: t.Branch("nested", ROOT.std.vector["std::vector<float>"]()),
        "names": lambda t: t.Branch("names", ROOT.std.vector["std::string"]()),
        "momentum": lambda t: t.Branch("momentum", ROOT.TLorentzVector()),
        "pair": lambda t: t.Branch("pair", np.zeros(2, np.float32), "a/F:b/F"),
        "packed": lambda t: t.Branch("packed", np.zeros(1, np.float32), "packed/f"),
    }.items():
        tree = ROOT.TTree(name, name)
        keep.append(declare(tree))
        tree.Fill()
        tree.Write()
    handle.Close()
    return path


@pytest.mark.parametrize("name", ["label", "nested", "names", "momentum", "pair", "packed"])
def test_branch_types_names_the_branch_it_cannot_write(unwritable: Path, name: str) -> None:
    with uproot.open(unwritable) as handle, pytest.raises(ValueError, match=repr(name)):
        branch_types(handle[name])


# -- what ROOT writes --------------------------------------------------------------------------


BRANCH_ELEMENT_MEMBERS = (
    "fTitle",
    "fClassName",
    "fParentName",
    "fClonesName",
    "fCheckSum",
    "fClassVersion",
    "fID",
    "fType",
    "fStreamerType",
    "fMaximum",
    "fBranchCount",
    "fBranchCount2",
    "fSplitLevel",
    "fBasketSize",
    "fOffset",
)
LEAF_ELEMENT_MEMBERS = ("fTitle", "fLen", "fLenType", "fOffset", "fIsRange", "fIsUnsigned")


def members(model: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """Members of an uproot model, TStrings as str."""
    return {name: model.member(name) for name in names} | {
        name: str(model.member(name)) for name in names if "Name" in name or name == "fTitle"
    }


def test_vector_branches_have_the_members_root_writes(files: Files) -> None:
    with uproot.open(files.reference) as reference, uproot.open(files.ours["none"]) as ours:
        for spec in VECTORS:
            theirs, mine = reference[TREE][spec.name], ours[TREE][spec.name]
            assert type(mine).__name__ == type(theirs).__name__ == "Model_TBranchElement_v10"
            assert members(mine, BRANCH_ELEMENT_MEMBERS) == members(theirs, BRANCH_ELEMENT_MEMBERS)
            assert mine.member("fCheckSum") == class_checksum(f"vector<{spec.ctype}>")
            (their_leaf,), (my_leaf,) = theirs.member("fLeaves"), mine.member("fLeaves")
            assert my_leaf.classname == their_leaf.classname == "TLeafElement"
            assert my_leaf.member("fID") == their_leaf.member("fID") == -1
            assert my_leaf.member("fType") == their_leaf.member("fType") == -1
            assert my_leaf.member("fLeafCount") is their_leaf.member("fLeafCount") is None
            assert members(my_leaf, LEAF_ELEMENT_MEMBERS) == members(
                their_leaf, LEAF_ELEMENT_MEMBERS
            )
            assert mine.typename == theirs.typename
            assert repr(mine.interpretation) == repr(theirs.interpretation)


def entry_bytes(branch: Any) -> list[bytes]:
    """Every entry of a branch as the bytes its baskets hold (uncompressed)."""
    result = []
    for i in range(branch.num_baskets):
        basket = branch.basket(i)
        data, offsets = basket.data.tobytes(), basket.byte_offsets
        result.extend(data[a:b] for a, b in itertools.pairwise(offsets))
    return result


def test_vector_entries_are_the_bytes_root_writes(files: Files) -> None:
    with uproot.open(files.reference) as reference, uproot.open(files.ours["zstd"]) as ours:
        for spec in VECTORS:
            theirs = entry_bytes(reference[TREE][spec.name])
            assert len(theirs) == ENTRIES
            assert entry_bytes(ours[TREE][spec.name]) == theirs, spec.name
        # the header of an entry: byte count | 0x40000000, version 10 (ROOT 6.40), size
        offsets, content = files.truth["pf_pt"]
        first = next(i for i in range(ENTRIES) if offsets[i + 1] - offsets[i] == 2)
        pt = entry_bytes(reference[TREE]["pf_pt"])[first]
        assert pt[:10] == bytes.fromhex("4000000e 000a 00000002")
        assert pt[10:] == content[offsets[first] : offsets[first + 1]].astype(">f4").tobytes()


def test_streamer_records_are_those_root_writes(files: Files) -> None:
    with uproot.open(files.reference) as reference:
        for name, version, raw in (
            ("TBranchElement", 10, _streamers.TBRANCHELEMENT_V10),
            ("TLeafElement", 1, _streamers.TLEAFELEMENT_V1),
        ):
            streamer = reference.file.streamer_named(name, version)
            assert uproot.serialization.serialize_object_any(streamer, name) + b"\x00" == raw
        # ROOT records no streamer for vector<T> of numbers, and neither do we
        assert not [name for name in reference.file.streamers if "vector" in name]
    with uproot.open(files.ours["zstd"]) as ours:
        assert not [name for name in ours.file.streamers if "vector" in name]
        assert {"TBranchElement", "TLeafElement", "TBranch", "TTree"} <= set(ours.file.streamers)
        assert ours.file.streamer_named("TBranchElement", 10) is not None


def test_scalars_fixed_and_counted_arrays_are_what_uproot_writes(tmp_path: Path) -> None:
    truth = make_truth(2, entries=50)
    sv_mass = ak.unflatten(truth["sv_mass"][1], np.diff(truth["sv_mass"][0]))
    plain = {s.name: s for s in SPECS if s.kind in ("scalar", "fixed") and s.name != "nsv"}
    data = {name: truth[name] for name in plain} | {"sv_mass": sv_mass}
    for compression in COMPRESSIONS.values():
        for writer in ("uproot", "ours"):
            (tmp_path / writer).mkdir(exist_ok=True)
            path = tmp_path / writer / "same.root"
            with (
                fixed_time(),
                uproot.recreate(path, compression=compression, uuid_function=fixed_uuid) as f,
            ):
                if writer == "uproot":  # its counter: "n" + name, int32, before the array
                    types_ = {"sv_mass": sv_mass.type.content} | {
                        name: np.dtype((s.dtype, s.shape)) for name, s in plain.items()
                    }
                    f.mktree(TREE, types_)
                    extend = f[TREE].extend
                else:
                    branches = [
                        BranchType("nsv_mass", "scalar", np.int32),
                        BranchType("sv_mass", "counted", np.float32, counter="nsv_mass"),
                        *(BranchType(n, s.kind, s.dtype, shape=s.shape) for n, s in plain.items()),
                    ]
                    extend = mktree(f, TREE, branches).extend
                for start in range(0, 50, 20):
                    extend({name: v[start : start + 20] for name, v in data.items()})
        written = {w: (tmp_path / w / "same.root").read_bytes() for w in ("uproot", "ours")}
        assert written["ours"] == written["uproot"], compression


# -- reading it back ---------------------------------------------------------------------------


@pytest.mark.parametrize("label", [*COMPRESSIONS, *MERGED])
def test_uproot_reads_every_entry_back(files: Files, label: str) -> None:
    expected = expected_in(files, label)
    with uproot.open(path_of(files, label)) as handle, uproot.open(files.reference) as reference:
        tree = handle[TREE]
        assert tree.num_entries == len(entry_lists(expected["tau_pt"]))
        assert tree.keys() == reference[TREE].keys()
        for spec in SPECS:
            branch, theirs = tree[spec.name], reference[TREE][spec.name]
            assert branch.typename == theirs.typename, spec.name
            assert repr(branch.interpretation) == repr(theirs.interpretation), spec.name
            assert branch.array(library="ak").tolist() == entry_lists(expected[spec.name])
    if label not in MERGED:
        assert tree.typenames()["pf_pt"] == "std::vector<float>"
        assert tree.typenames()["pf_id"] == "std::vector<int64_t>"
        assert tree.typenames()["sv_mass"] == "float[]"


@pytest.mark.parametrize("label", LABELS)
def test_root_binds_every_branch_with_set_branch_address(
    files: Files, root_reads: RootReads, label: str
) -> None:
    values, sizes = root_reads.seen[str(path_of(files, label))]["branch_address"]
    assert "__failed__" not in values
    for name, truth in expected_in(files, label).items():
        flat, entry_sizes = flat_and_sizes(truth)
        assert values.get(name, []) == flat, name
        assert sizes.get(name, []) == entry_sizes, name


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("reader", ["reader_value", "reader_array", "dataframe", "draw"])
def test_root_readers_see_every_value(
    files: Files, root_reads: RootReads, label: str, reader: str
) -> None:
    seen = root_reads.seen[str(path_of(files, label))][reader]
    names = [spec.name for spec in (JAGGED if reader == "reader_array" else VECTORS)]
    if reader == "dataframe":  # not vector<bool>: see ttree_root_reader.py
        names.remove("pf_valid")
    assert sorted(seen) == sorted(names)
    for name in names:
        flat, entry_sizes = flat_and_sizes(expected_in(files, label)[name])
        if reader == "draw":
            assert seen[name] == flat, name
            continue
        assert seen[name][:2] == [flat, entry_sizes], name
    if reader == "dataframe" and label not in MERGED:
        # Sum adds in the element type (int32 wraps): it must give what it gives on ROOT's file
        reference = root_reads.seen[str(files.reference)][reader]
        assert {name: seen[name][2] for name in names} == {
            name: reference[name][2] for name in names
        }
        assert seen["pf_dz"][2] == pytest.approx(files.truth["pf_dz"][1].sum())


def test_root_prints_no_warning(files: Files, root_reads: RootReads) -> None:
    for output in (root_reads.stderr, files.hadd_output):
        for word in ("dictionary", "Warning", "Error", "error"):
            assert word not in output, output


# -- the writer's own promises -----------------------------------------------------------------


def test_same_input_gives_the_same_bytes(files: Files, tmp_path: Path) -> None:
    with uproot.open(files.reference) as handle:
        types_ = branch_types(handle[TREE])
    (tmp_path / "again").mkdir()
    write_ours(tmp_path / "again" / "taus.root", types_, files.truth, COMPRESSIONS["zstd"])
    assert (tmp_path / "again" / "taus.root").read_bytes() == files.ours["zstd"].read_bytes()


def test_counter_written_before_the_arrays_it_counts(tmp_path: Path) -> None:
    types_ = [
        BranchType("x", "counted", np.float64, counter="n"),
        BranchType("v", "vector", np.float32),
        BranchType("n", "scalar", np.uint32),
    ]
    with uproot.recreate(tmp_path / "order.root") as f:
        tree = mktree(f, TREE, types_)
        assert [b.name for b in tree.branches] == ["n", "x", "v"]
        tree.extend({"x": ak.Array([[1.5], [], [2.5, 3.5]]), "v": ak.Array([[], [], []])})
    with uproot.open(tmp_path / "order.root") as handle:
        assert handle[TREE]["x"].array().tolist() == [[1.5], [], [2.5, 3.5]]
        assert handle[TREE]["n"].array().tolist() == [1, 0, 2]
        assert handle[TREE]["v"].array().tolist() == [[], [], []]


def test_extend_refuses_inconsistent_input(tmp_path: Path) -> None:
    types_ = [
        BranchType("n", "scalar", np.int32),
        BranchType("a", "counted", np.float32, counter="n"),
        BranchType("b", "counted", np.int32, counter="n"),
        BranchType("v", "vector", np.int16),
        BranchType("p", "fixed", np.float32, shape=(2,)),
    ]
    good = {
        "a": (np.array([0, 1, 3]), np.zeros(3, np.float32)),
        "b": (np.array([0, 1, 3]), np.zeros(3, np.int32)),
        "v": (np.array([0, 0, 2]), np.array([1, 2])),
        "p": np.zeros((2, 2), np.float32),
    }
    bad: list[tuple[dict[str, Any], str]] = [
        (good | {"b": (np.array([0, 2, 3]), np.zeros(3, np.int32))}, "share the counter"),
        (good | {"n": np.array([1, 1])}, "disagrees"),
        (good | {"extra": np.zeros(2)}, "'extra'"),
        ({k: v for k, v in good.items() if k != "v"}, "'v'"),
        (good | {"v": (np.array([0, 0, 2]), np.array([1.0, 2.0]))}, "'v' holds int16"),
        (good | {"v": (np.array([0, 0, 2]), np.array([1, 99999]))}, "beyond the range"),
        (good | {"p": np.zeros((2, 3), np.float32)}, "per entry"),
        (good | {"p": np.zeros((3, 2), np.float32)}, "entries"),
        (good | {"v": (np.array([0, 3, 2]), np.array([1, 2, 3]))}, "offsets must rise"),
    ]
    with uproot.recreate(tmp_path / "bad.root") as f:
        tree = mktree(f, TREE, types_)
        for data, message in bad:
            with pytest.raises((ValueError, TypeError), match=message):
                tree.extend(data)
        tree.extend(good)
        assert tree.num_entries == 2
    for kwargs, message in (
        ({"kind": "vector", "dtype": np.dtype("U3")}, "not a number type"),
        ({"kind": "vector", "dtype": np.int64, "element": "int"}, "does not hold int64"),
        ({"kind": "scalar", "dtype": np.int32, "counter": "n"}, "kind 'counted' only"),
        ({"kind": "fixed", "dtype": np.int32}, "goes with 'fixed'"),
    ):
        with pytest.raises(ValueError, match=message):
            BranchType("x", **kwargs)


def test_all_empty_vectors_and_empty_extends(tmp_path: Path) -> None:
    types_ = [BranchType("v", "vector", np.float32), BranchType("w", "vector", np.bool_)]
    path = tmp_path / "empty.root"
    with uproot.recreate(path, compression=uproot.ZSTD(5)) as f:
        tree = mktree(f, TREE, types_)
        tree.extend({"v": ak.Array([]), "w": (np.zeros(1, np.int64), np.zeros(0, bool))})
        tree.extend({"v": ak.Array([[], []]), "w": ak.Array([[], []])})
    with uproot.open(path) as handle:
        assert handle[TREE]["v"].array().tolist() == [[], []]
        assert handle[TREE]["w"].array().tolist() == [[], []]
    handle = ROOT.TFile.Open(str(path))
    try:
        tree = handle.Get(TREE)
        assert tree.GetEntries() == 2
        tree.GetEntry(1)
        assert len(tree.v) == 0 and len(tree.w) == 0
    finally:
        handle.Close()


@settings(max_examples=40, deadline=None)
@given(
    floats=st.lists(st.lists(st.floats(width=32, allow_nan=False), max_size=8), max_size=30),
    ints=st.lists(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=8), max_size=30),
    splits=st.integers(1, 4),
)
def test_random_jagged_arrays_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    floats: list[list[float]],
    ints: list[list[int]],
    splits: int,
) -> None:
    entries = min(len(floats), len(ints))
    floats, ints = floats[:entries], ints[:entries]
    path = tmp_path_factory.getbasetemp() / "round-trip.root"
    data = {
        "f": ak.values_astype(ak.Array(floats), np.float32),
        "i": ak.values_astype(ak.Array(ints), np.int32),
    }
    types_ = [BranchType("f", "vector", np.float32), BranchType("i", "vector", np.int32)]
    with uproot.recreate(path, compression=uproot.LZ4(1)) as f:
        tree = mktree(f, TREE, types_)
        bounds = np.linspace(0, entries, splits + 1).astype(int)
        for start, stop in itertools.pairwise(bounds):
            tree.extend({name: array[start:stop] for name, array in data.items()})
    with uproot.open(path) as handle:
        assert handle[TREE]["f"].array().tolist() == [
            np.asarray(entry, np.float32).tolist() for entry in floats
        ]
        assert handle[TREE]["i"].array().tolist() == ints
