"""Tests of config.py: the original YAML files, the project YAML and one-line errors."""

from __future__ import annotations

import shutil
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from balanced_batches.config import (
    STANDARD_TYPES,
    Binning,
    ProjectConfig,
    edges_from_triples,
    load_binning,
    load_process_types,
    load_project,
    with_overrides,
)
from balanced_batches.errors import ConfigError

# the original configuration, shipped with the examples
REFERENCE = Path(__file__).resolve().parents[1] / "examples" / "prod_Phase2_v2"


def write(path: Path, text: str) -> Path:
    """Writes `text` to `path` (parents created) and returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def config_error(load, path: Path, *expected: str) -> str:
    """Runs `load(path)`, checks it raises a one-line ConfigError naming the file and `expected`."""
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for part in expected:
        assert part in message, (part, message)
    return message


# -- the original files ------------------------------------------------------


def test_reference_binning_loads_unchanged() -> None:
    binning = load_binning(REFERENCE / "binning.yaml")
    assert binning.pt == [(20.0, 60.0, 5.0), (60.0, 100.0, 10.0)]
    assert binning.abseta == [(0.0, 2.4, 0.6)]


def test_reference_pt_edges() -> None:
    edges = load_binning(REFERENCE / "binning.yaml").pt_edges()
    assert edges.dtype == np.float64
    assert edges.tolist() == [20, 25, 30, 35, 40, 45, 50, 55, 60, 70, 80, 90, 100]


def test_reference_abseta_edges_are_the_originals_bit_for_bit() -> None:
    edges = load_binning(REFERENCE / "binning.yaml").abseta_edges()
    original = np.concatenate([np.arange(0.0, 2.4, 0.6), [2.4]])
    assert edges.tobytes() == original.tobytes()
    assert edges[3] == 1.7999999999999998
    assert edges[3] != 1.8


def test_reference_process_types_load_unchanged_in_file_order() -> None:
    processes = load_process_types(REFERENCE / "process_types.yaml")
    raw = yaml.safe_load((REFERENCE / "process_types.yaml").read_text())
    assert list(processes) == list(raw)
    assert len(processes) == 15
    assert processes["TT"].regex == "TT_"
    assert processes["MinBias"].active_types == []
    assert processes["DY"].active_types == ["genuine", "jet", "electron", "muon"]
    for name, spec in processes.items():
        assert set(spec.active_types) <= set(STANDARD_TYPES), name


@given(
    st.lists(
        st.tuples(st.integers(-3, 30), st.integers(-3, 30), st.sampled_from([-1, 0, 0.5, 1, 2, 3])),
        min_size=1,
        max_size=4,
    )
)
@settings(max_examples=150, deadline=None)
def test_binning_accepts_exactly_the_valid_triples(triples: list[tuple[int, int, float]]) -> None:
    """Valid iff every step > 0, every stop > start and the concatenated edges strictly increase."""
    valid = all(step > 0 and stop > start for start, stop, step in triples)
    if valid:
        edges: list[float] = []
        for start, stop, step in triples:
            value = float(start)
            while value < stop:
                edges.append(value)
                value += step
        edges.append(float(triples[-1][1]))
        valid = all(a < b for a, b in pairwise(edges))
    if valid:
        binning = Binning(pt=triples, abseta=[(0, 1, 1)])
        assert binning.pt_edges().tolist() == pytest.approx(edges)
        assert np.all(np.diff(binning.pt_edges()) > 0)
    else:
        with pytest.raises(ValueError, match="pt"):
            Binning(pt=triples, abseta=[(0, 1, 1)])


def test_edges_from_triples_is_concatenated_arange_plus_last_stop() -> None:
    triples = [(0.0, 1.0, 0.25), (1.0, 3.0, 1.0), (3.0, 10.0, 7.0)]
    expected = [0.0, 0.25, 0.5, 0.75, 1.0, 2.0, 3.0, 10.0]
    assert edges_from_triples(triples).tolist() == expected


# -- one-line errors from the original files ---------------------------------


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "binning.yaml", "pt: [[20, 60, 5]\nabseta: [[0, 2.4, 0.6]]\n")
    message = config_error(load_binning, path, "malformed YAML", "line")
    assert "line 2" in message or "line 1" in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    config_error(load_binning, tmp_path / "nowhere.yaml", "cannot read")


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("pt: []\nabseta: [[0, 2.4, 0.6]]", "'pt'", "[]"),
        ("pt: [[20, 60, 5]]\nabseta: []", "'abseta'", "[]"),
        ("pt: [[20, 60, 0]]\nabseta: [[0, 2.4, 0.6]]", "'pt'", "0"),
        ("pt: [[20, 60, -5]]\nabseta: [[0, 2.4, 0.6]]", "'pt'", "-5"),
        ("pt: [[60, 20, 5]]\nabseta: [[0, 2.4, 0.6]]", "'pt'", "60"),
        ("pt: [[20, 20, 5]]\nabseta: [[0, 2.4, 0.6]]", "'pt'", "20"),
        ("pt: [[20, 60, 5], [50, 100, 10]]\nabseta: [[0, 2.4, 0.6]]", "'pt'", "50"),
        (
            "pt: [[20, 60, 5], [60, 100, 10]]\nabseta: [[0, 1.2, 0.6], [0.6, 2.4, 0.6]]",
            "abseta",
            "0.6",
        ),
        ("pt: [[20, 60]]\nabseta: [[0, 2.4, 0.6]]", "pt", "60"),
        ("pt: [[20, 60, five]]\nabseta: [[0, 2.4, 0.6]]", "pt", "five"),
        ("pt: [[20, 60, 5]]\nabseta: [[0, 2.4, 0.6]]\neta: [[0, 1, 1]]", "'eta'", "[[0, 1, 1]]"),
        ("pt: [[20, 60, 5]]", "'abseta'", ""),
    ],
    ids=[
        "empty-pt",
        "empty-abseta",
        "zero-step",
        "negative-step",
        "stop-below-start",
        "stop-equals-start",
        "overlapping-triples",
        "overlapping-abseta",
        "pair-not-triple",
        "non-number",
        "unknown-key",
        "missing-key",
    ],
)
def test_bad_binning_is_one_line_naming_key_and_value(
    tmp_path: Path, text: str, key: str, value: str
) -> None:
    path = write(tmp_path / "binning.yaml", text)
    config_error(load_binning, path, key, value)


def test_binning_with_absurdly_many_bins_is_a_config_error(tmp_path: Path) -> None:
    """A typo in a step (1e-3 over 1e12) must not end in a MemoryError traceback."""
    path = write(tmp_path / "binning.yaml", "pt: [[0, 1.0e+12, 1.0e-3]]\nabseta: [[0, 2.4, 0.6]]")
    config_error(load_binning, path, "pt")


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("DY:\n  regex: '(DYToLL'\n  active_types: [jet]\n", "DY.regex", "'(DYToLL'"),
        ("DY:\n  regex: DYToLL\n  activetypes: [jet]\n", "DY.activetypes", "['jet']"),
        ("DY:\n  active_types: [jet]\n", "DY.regex", ""),
        ("DY: DYToLL\n", "'DY'", "'DYToLL'"),
        ("- DY\n- QCD\n", "(top level)", "['DY', 'QCD']"),
    ],
    ids=["regex-does-not-compile", "unknown-key", "missing-regex", "not-a-mapping", "list"],
)
def test_bad_process_types_is_one_line_naming_key_and_value(
    tmp_path: Path, text: str, key: str, value: str
) -> None:
    path = write(tmp_path / "process_types.yaml", text)
    config_error(load_process_types, path, key, value)


# -- the project YAML --------------------------------------------------------


def copy_reference(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("binning.yaml", "process_types.yaml"):
        shutil.copy(REFERENCE / name, directory / name)


def test_project_resolves_original_files_relative_to_the_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_reference(tmp_path / "ref")
    path = write(
        tmp_path / "prod" / "project.yaml",
        "processes: ../ref/process_types.yaml\n"
        "binning: ../ref/binning.yaml\n"
        "inputs: {file_list: lists/flist.txt, campaign: prod_Phase2_v2}\n"
        "output: {directory: out}\n",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_project(path)
    assert config.processes == load_process_types(REFERENCE / "process_types.yaml")
    assert list(config.processes) == list(load_process_types(REFERENCE / "process_types.yaml"))
    assert config.binning == load_binning(REFERENCE / "binning.yaml")
    assert config.inputs.file_list == str((tmp_path / "prod" / "lists" / "flist.txt").resolve())
    assert config.output.directory == str((tmp_path / "prod" / "out").resolve())
    assert config.inputs.campaign == "prod_Phase2_v2"


def test_project_keeps_absolute_paths_and_urls(tmp_path: Path) -> None:
    path = write(
        tmp_path / "project.yaml",
        f"binning: {REFERENCE / 'binning.yaml'}\n"
        "inputs: {file_list: /abs/flist.txt}\n"
        "output: {directory: 'root://eos.example//store/out'}\n",
    )
    config = load_project(path)
    assert config.binning == load_binning(REFERENCE / "binning.yaml")
    assert config.inputs.file_list == "/abs/flist.txt"
    assert config.output.directory == "root://eos.example//store/out"


def test_project_inline_content_equals_the_files(tmp_path: Path) -> None:
    inline = {
        "processes": yaml.safe_load((REFERENCE / "process_types.yaml").read_text()),
        "binning": yaml.safe_load((REFERENCE / "binning.yaml").read_text()),
    }
    path = write(tmp_path / "inline.yaml", yaml.safe_dump(inline, sort_keys=False))
    copy_reference(tmp_path)
    by_path = write(
        tmp_path / "paths.yaml", "processes: process_types.yaml\nbinning: binning.yaml\n"
    )
    assert load_project(path) == load_project(by_path)
    assert list(load_project(path).processes) == list(inline["processes"])


def test_empty_project_gives_the_defaults(tmp_path: Path) -> None:
    config = load_project(write(tmp_path / "project.yaml", ""))
    assert config == ProjectConfig()
    assert config.types == STANDARD_TYPES
    assert config.binning is None
    assert config.plan.pileup == "all"


def test_error_in_a_referenced_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path / "binning.yaml", "pt: [[20, 60, 0]]\nabseta: [[0, 2.4, 0.6]]\n")
    path = write(tmp_path / "project.yaml", "binning: binning.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_project(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "binning.yaml"))
    assert "'pt'" in message


def test_missing_referenced_file_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path / "project.yaml", "processes: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        load_project(path)


PROCESSES = "processes: {DY: {regex: DYToLL, active_types: [jet, genuine]}}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plann: {seed: 1}\n", ["'plann'"]),
        ("plan: {sed: 1}\n", ["plan.sed", "1"]),
        ("inputs: {tree: taus, treee: taus}\n", ["inputs.treee", "'taus'"]),
        ("plan: {events_per_batch_type: 0}\n", ["plan.events_per_batch_type", "0"]),
        ("plan: {events_per_batch_type: -100}\n", ["plan.events_per_batch_type", "-100"]),
        ("plan: {batches: 0}\n", ["plan.batches", "0"]),
        ("plan: {max_reuse: 0}\n", ["plan.max_reuse", "0"]),
        ("plan: {seed: -1}\n", ["plan.seed", "-1"]),
        ("plan: {pileup: PU100}\n", ["plan.pileup", "'PU100'"]),
        (PROCESSES.replace("genuine", "tau"), ["processes.DY.active_types", "'tau'"]),
        ("processes: {DY: {regex: '[DY', active_types: []}}\n", ["processes.DY.regex", "'[DY'"]),
        ("output: {compression: gzip}\n", ["output.compression", "'gzip'"]),
        ("output: {compression: 'zstd:'}\n", ["output.compression", "'zstd:'"]),
        ("output: {compression: 'zstd:123'}\n", ["output.compression", "'zstd:123'"]),
        ("output: {name: batch}\n", ["output.name", "'batch'"]),
        ("output: {name: 'sub/batch{index}'}\n", ["output.name", "'sub/batch{index}'"]),
        ("output: {format: hdf5}\n", ["output.format", "'hdf5'"]),
        ("output: {batches_per_file: 0}\n", ["output.batches_per_file", "0"]),
        ("inputs: {replace_prefix: /storage}\n", ["inputs.replace_prefix", "'/storage'"]),
        ("types: {tau-had: 'genLepton_kind == 5'}\n", ["types", "'tau-had'"]),
        ("types: {}\n", ["types"]),
        ("- plan\n", ["mapping"]),
        ("plan: {seed: [1\n", ["malformed YAML"]),
    ],
)
def test_bad_project_is_one_line_naming_key_and_value(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = write(tmp_path / "project.yaml", text)
    config_error(load_project, path, *expected)


@pytest.mark.parametrize("compression", ["none", "ZLIB", "lzma:9", "lz4:1", "zstd", "zstd:19"])
def test_good_compression_strings_are_accepted_lower_case(tmp_path: Path, compression: str) -> None:
    path = write(tmp_path / "project.yaml", f"output: {{compression: '{compression}'}}\n")
    assert load_project(path).output.compression == compression.lower()


def test_active_types_may_name_user_defined_types(tmp_path: Path) -> None:
    path = write(
        tmp_path / "project.yaml",
        "types: {tau: 'genLepton_kind == 5', jet: 'genLepton_index == -1'}\n"
        "processes: {DY: {regex: DYToLL, active_types: [tau]}}\n",
    )
    config = load_project(path)
    assert list(config.types) == ["tau", "jet"]
    assert config.processes["DY"].active_types == ["tau"]


# -- overrides ---------------------------------------------------------------


def test_with_overrides_applies_dotted_keys_and_ignores_none() -> None:
    config = ProjectConfig(binning=Binning(pt=[(20, 40, 10)], abseta=[(0, 2, 1)]))
    changed = with_overrides(
        config,
        {
            "plan.events_per_batch_type": 100,
            "plan.pileup": "PU200",
            "plan.seed": None,
            "inputs.campaign": "prod",
            "output.format": None,
        },
        "command line",
    )
    assert changed.plan.events_per_batch_type == 100
    assert changed.plan.pileup == "PU200"
    assert changed.plan.seed == config.plan.seed
    assert changed.inputs.campaign == "prod"
    assert changed.output == config.output
    assert changed.binning == config.binning
    # the original is untouched
    assert config.plan.events_per_batch_type is None
    assert config.plan.pileup == "all"


def test_with_overrides_replaces_a_whole_section() -> None:
    config = ProjectConfig()
    changed = with_overrides(
        config, {"binning": {"pt": [[20, 40, 10]], "abseta": [[0, 2, 1]]}}, "cli"
    )
    assert changed.binning is not None
    assert changed.binning.pt_edges().tolist() == [20, 30, 40]


def test_with_overrides_only_nones_changes_nothing() -> None:
    config = ProjectConfig()
    assert with_overrides(config, {"plan.seed": None, "binning": None}, "cli") == config


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("plan.events_per_batch_type", 0),
        ("plan.pileup", "PU999"),
        ("output.compression", "brotli"),
    ],
)
def test_bad_override_is_one_line_naming_source_key_and_value(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        with_overrides(ProjectConfig(), {key: value}, "--command-line")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("--command-line")
    assert key in message
    assert repr(value) in message


def test_an_oauth_service_name_that_a_job_script_cannot_hold_is_a_config_error(
    tmp_path: Path,
) -> None:
    """Service names go into submit files and shell lines as they are: quotes, `$` or spaces
    are refused where the configuration is read, naming the key and the value."""
    path = write(tmp_path / "project.yaml", "batch:\n  oauth_services: [wlcg, 'cms $HOME']\n")
    config_error(load_project, path, "batch.oauth_services", "cms $HOME")
    fine = write(tmp_path / "fine.yaml", "batch:\n  oauth_services: [wlcg, cms.analysis_1]\n")
    assert load_project(fine).batch.oauth_services == ["wlcg", "cms.analysis_1"]
