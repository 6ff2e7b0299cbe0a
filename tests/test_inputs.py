"""Tests of inputs.py: the file list, catalog names, processes and pile-up scenarios."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from balanced_batches.config import InputsConfig, ProcessType, load_process_types
from balanced_batches.errors import ConfigError
from balanced_batches.inputs import (
    catalog_name,
    describe_inputs,
    detect_pileup,
    detect_process,
    list_paths,
    replace_prefix,
)

# the original configuration, shipped with the examples
REFERENCE = Path(__file__).resolve().parents[1] / "examples" / "prod_Phase2_v2"
FLIST = REFERENCE / "flist.txt"
CAMPAIGN = "prod_Phase2_v2"

# The process of every dataset directory of the reference list, decided by hand.
DATASET_PROCESS = {
    "DYToLL_M-50_TuneCP5_14TeV-pythia8": "DY",
    "DoubleElectron_FlatPt-1To100": "ElecGun",
    "SingleElectron_PT200to500": "ElecGun",
    "SingleElectron_PT2to200": "ElecGun",
    "DoubleMuon_gun_FlatPt-1To100": "MuonGun",
    **{
        f"Mu{sign}_Pt{pt}-gun": "MuonGun"
        for sign in ("plus", "minus")
        for pt in (10, 50, 100, 500, 1000)
    },
    "GluGluHToTauTau_M125_14TeV_powheg_pythia8_TuneCP5": "ggH",
    "GluGluHToTauTau_M125_TuneCP5_14TeV_powheg_pythia8": "ggH",
    "MinBias_TuneCP5_14TeV-pythia8": "MinBias",
    "QCD_Pt-15to3000_TuneCP5_Flat_14TeV-pythia8": "QCD",
    "QCD_Pt_120to170_TuneCP5_14TeV_pythia8": "QCD",
    "QCD_Pt_170to300_TuneCP5_14TeV_pythia8": "QCD",
    "QCD_Pt_300to470_TuneCP5_14TeV_pythia8": "QCD",
    "QCD_Pt_470to600_TuneCP5_14TeV_pythia8": "QCD",
    "QCD_Pt_600oInf_TuneCP5_14TeV_pythia8": "QCD",
    "QCD_Pt_80to120_TuneCP5_14TeV_pythia8": "QCD",
    "TTTo2L2Nu_TuneCP5_14TeV-powheg-pythia8": "TTTo2L2Nu",
    "TTToSemiLepton_TuneCP5_14TeV-powheg-pythia8": "TTToSemiLepton",
    "TT_TuneCP5_14TeV-powheg-pythia8": "TT",
    "VBFHToTauTau_M125_TuneCUETP8M1_14TeV_powheg_pythia8": "VBF",
    "WJetsToLNu_TuneCP5_14TeV-amcatnloFXFX-pythia8": "WJets",
    "ZprimeToEE_M-6000_TuneCP5_14TeV-pythia8": "ZprimeToEE_M-6000",
    "ZprimeToMuMu_M-6000_TuneCP5_14TeV-pythia8": "ZprimeToMuMu_M-6000",
    "ZprimeToTauTau_M-1500_TuneCP5_14TeV-pythia8-tauola": "ZprimeToTauTau_M-1500",
    "ZprimeToTauTau_M-500_TuneCP5_14TeV-pythia8-tauola": "ZprimeToTauTau_M-500",
}


@pytest.fixture(scope="module")
def processes() -> dict[str, ProcessType]:
    return load_process_types(REFERENCE / "process_types.yaml")


@pytest.fixture(scope="module")
def reference_paths() -> list[str]:
    return FLIST.read_text().split()


def dataset_of(path: str) -> str:
    return path.split("/crab_output/")[1].split("/")[0]


# -- replace_prefix ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "replacement", "expected"),
    [
        (
            "/storage/gridka-nrg/TauML/a.root",
            "/storage/gridka-nrg@root://cmsxrootd-kit.gridka.de//store/user",
            "root://cmsxrootd-kit.gridka.de//store/user/TauML/a.root",
        ),
        ("/data/x/data/y.root", "/data@/mnt", "/mnt/x/data/y.root"),
        ("/other/data/y.root", "/data@/mnt", "/other/data/y.root"),
        ("/data/y.root", "/data/@", "y.root"),
        ("/data/y.root", "@root://server/", "root://server//data/y.root"),
        ("data/y.root", "@/abs/", "/abs/data/y.root"),
        ("/s/y.root", "/s@root://user@host//store", "root://user@host//store/y.root"),
        ("/data/y.root", None, "/data/y.root"),
        ("/data/y.root", "", "/data/y.root"),
    ],
)
def test_replace_prefix(path: str, replacement: str | None, expected: str) -> None:
    assert replace_prefix(path, replacement) == expected


def test_empty_old_prefix_prepends_once_unlike_the_original() -> None:
    """The original inserted NEW between every character of the path."""
    result = replace_prefix("/a/b.root", "@X")
    assert result == "X/a/b.root"
    assert result.count("X") == 1


# -- catalog_name --------------------------------------------------------------


def test_catalog_name_starts_at_the_campaign_without_crab_output(
    reference_paths: list[str],
) -> None:
    assert catalog_name(reference_paths[0], CAMPAIGN) == (
        "prod_Phase2_v2/DoubleElectron_FlatPt-1To100/crab_DoubleElectron_FlatPt-1To100_NoPU"
        "/210317_190551/0000/eventTuple_1.root"
    )
    for path in reference_paths:
        name = catalog_name(path, CAMPAIGN)
        assert name.startswith(CAMPAIGN + "/")
        assert "/crab_output" not in name
        assert path.endswith(name.split("/", 1)[1])


@pytest.mark.parametrize(
    ("path", "campaign", "expected"),
    [
        ("/a/camp/crab_output/x/f.root", None, "/a/camp/x/f.root"),
        ("/a/camp/crab_output/x/f.root", "", "/a/camp/x/f.root"),
        ("/a/camp/crab_output/x/f.root", "missing", "/a/camp/x/f.root"),
        ("root://h//store/camp/crab_output/x/f.root", "camp", "camp/x/f.root"),
        ("/a/camp/x/camp/f.root", "camp", "camp/x/camp/f.root"),
    ],
)
def test_catalog_name(path: str, campaign: str | None, expected: str) -> None:
    assert catalog_name(path, campaign) == expected


# -- detect_process / detect_pileup ------------------------------------------


def test_every_reference_file_gets_its_process(
    processes: dict[str, ProcessType], reference_paths: list[str]
) -> None:
    assert len(reference_paths) == 298
    for path in reference_paths:
        name = catalog_name(path, CAMPAIGN)
        assert detect_process(name, processes) == DATASET_PROCESS[dataset_of(path)], path


def test_reference_process_totals(
    processes: dict[str, ProcessType], reference_paths: list[str]
) -> None:
    found = Counter(detect_process(catalog_name(p, CAMPAIGN), processes) for p in reference_paths)
    assert found["TTTo2L2Nu"] == 97
    assert found["TT"] == 19
    assert found["MinBias"] == 11
    assert found["MuonGun"] == 5 + 4 + 3 + 4 + 3 + 3 + 5 + 3 + 5 + 4 + 5
    assert None not in found


def test_first_process_in_configuration_order_wins() -> None:
    name = "prod/TTTo2L2Nu_Tune/crab_TT_NoPU/f.root"  # matches both regexes
    specific_first = {
        "TTTo2L2Nu": ProcessType(regex="TTTo2L2Nu"),
        "TT": ProcessType(regex="TT_"),
    }
    generic_first = {"TT": specific_first["TT"], "TTTo2L2Nu": specific_first["TTTo2L2Nu"]}
    assert detect_process(name, specific_first) == "TTTo2L2Nu"
    assert detect_process(name, generic_first) == "TT"


def test_regex_is_searched_not_matched() -> None:
    processes = {"Muons": ProcessType(regex="Mu(plus|minus)"), "DY": ProcessType(regex="^DY")}
    assert detect_process("prod/Muminus_Pt10-gun/f.root", processes) == "Muons"
    assert detect_process("prod/DYToLL/f.root", processes) is None
    assert detect_process("DYToLL/f.root", processes) == "DY"
    assert detect_process("prod/QCD/f.root", processes) is None


def test_every_reference_file_has_a_pileup(reference_paths: list[str]) -> None:
    found = Counter(detect_pileup(catalog_name(p, CAMPAIGN)) for p in reference_paths)
    assert set(found) == {"NoPU", "PU140", "PU200"}
    assert sum(found.values()) == 298
    assert detect_pileup(catalog_name(reference_paths[0], CAMPAIGN)) == "NoPU"
    assert detect_pileup(catalog_name(reference_paths[1], CAMPAIGN)) == "PU140"
    assert detect_pileup(catalog_name(reference_paths[2], CAMPAIGN)) == "PU200"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("x/crab_QCD_NoPU/f.root", "NoPU"),
        ("x/crab_QCD_PU140/f.root", "PU140"),
        ("x/crab_QCD_PU200/f.root", "PU200"),
        ("x/crab_QCD_PU100/f.root", None),
        ("x/crab_QCD_pu200/f.root", None),
        ("", None),
    ],
)
def test_detect_pileup(name: str, expected: str | None) -> None:
    assert detect_pileup(name) == expected


# -- list_paths / describe_inputs ---------------------------------------------


def test_list_paths_keeps_order_drops_blanks_comments_and_duplicates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flist = tmp_path / "flist.txt"
    flist.write_text("/d/b.root\n\n# a comment\n  /d/a.root  \n/d/b.root\n/d/c.root\n")
    with caplog.at_level(logging.WARNING):
        paths = list_paths(InputsConfig(file_list=str(flist)))
    assert paths == ["/d/b.root", "/d/a.root", "/d/c.root"]
    assert "1 duplicate" in caplog.text


def test_list_paths_dedups_after_replacing_the_prefix(tmp_path: Path) -> None:
    flist = tmp_path / "flist.txt"
    flist.write_text("/mnt/store/a.root\nroot://srv//store/a.root\n/mnt/store/b.root\n")
    paths = list_paths(
        InputsConfig(file_list=str(flist), replace_prefix="/mnt/store@root://srv//store")
    )
    assert paths == ["root://srv//store/a.root", "root://srv//store/b.root"]


def test_list_paths_from_glob_is_sorted(tmp_path: Path) -> None:
    for name in ("b.root", "a.root", "sub/c.root", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    paths = list_paths(InputsConfig(glob=str(tmp_path / "**" / "*.root")))
    assert paths == sorted(paths)
    assert {Path(p).relative_to(tmp_path).as_posix() for p in paths} == {
        "a.root",
        "b.root",
        "sub/c.root",
    }


def test_list_paths_file_list_then_glob(tmp_path: Path) -> None:
    (tmp_path / "g.root").write_text("")
    flist = tmp_path / "flist.txt"
    flist.write_text("/z/first.root\n")
    paths = list_paths(InputsConfig(file_list=str(flist), glob=str(tmp_path / "*.root")))
    assert paths == ["/z/first.root", str(tmp_path / "g.root")]


def test_missing_file_list_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(ConfigError) as info:
        list_paths(InputsConfig(file_list=str(missing)))
    assert "\n" not in str(info.value)
    assert "inputs.file_list" in str(info.value)
    assert str(missing) in str(info.value)


def test_empty_glob_is_a_config_error(tmp_path: Path) -> None:
    pattern = str(tmp_path / "*.root")
    with pytest.raises(ConfigError) as info:
        list_paths(InputsConfig(glob=pattern))
    assert "inputs.glob" in str(info.value)
    assert pattern in str(info.value)


@pytest.mark.parametrize("content", ["", "\n# only a comment\n\n"])
def test_empty_file_list_is_a_config_error(tmp_path: Path, content: str) -> None:
    flist = tmp_path / "flist.txt"
    flist.write_text(content)
    with pytest.raises(ConfigError, match="no input files"):
        list_paths(InputsConfig(file_list=str(flist)))


def test_no_inputs_configured_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no input files"):
        list_paths(InputsConfig())


def test_describe_reference_inputs(
    processes: dict[str, ProcessType], reference_paths: list[str]
) -> None:
    inputs = InputsConfig(
        file_list=str(FLIST),
        campaign=CAMPAIGN,
        replace_prefix="/storage/gridka-nrg/aakhmets@root://cmsxrootd-kit.gridka.de//store/user/aakhmets",
    )
    files = describe_inputs(inputs, processes)
    assert len(files) == 298
    for file, original in zip(files, reference_paths, strict=True):
        assert file.path == original.replace(
            "/storage/gridka-nrg/aakhmets", "root://cmsxrootd-kit.gridka.de//store/user/aakhmets"
        )
        assert file.name == catalog_name(original, CAMPAIGN)
        assert file.process == DATASET_PROCESS[dataset_of(original)]
        assert file.pileup in {"NoPU", "PU140", "PU200"}
