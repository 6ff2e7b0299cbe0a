"""Splits by event (splits.py): the assignment's properties, the configuration, and a whole
production into train / validation / test checked against the input files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from balanced_batches.config import PlanConfig
from balanced_batches.errors import ConfigError
from balanced_batches.regions import build_selection
from balanced_batches.splits import SplitRule, parse_split_by, parse_splits, split_rule
from balanced_batches.stages.check import EventsBySplit
from conftest import (
    BINNING,
    PER_BATCH,
    PILEUP,
    PROCESS_TYPES,
    SEED,
    TREE,
    cli,
    count_args,
    read_output,
    reference_plan_args,
    region_counts,
)

FRACTIONS = {"train": 0.6, "validation": 0.15, "test": 0.25}
IDENTITY = ("run", "lumi", "evt")


def events(draw: st.DrawFn, n: int) -> dict[str, np.ndarray]:
    return {
        "run": draw(hnp.arrays(np.uint32, n, elements=st.integers(1, 3))),
        "lumi": draw(hnp.arrays(np.uint32, n, elements=st.integers(1, 50))),
        "evt": draw(hnp.arrays(np.uint64, n, elements=st.integers(0, 2**64 - 1))),
    }


@st.composite
def two_files(draw: st.DrawFn) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return events(draw, draw(st.integers(0, 200))), events(draw, draw(st.integers(1, 200)))


@given(two_files(), st.integers(0, 2**32))
@settings(max_examples=60, deadline=None)
def test_an_events_split_does_not_change_when_files_are_added(
    files: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], seed: int
) -> None:
    rule = split_rule(FRACTIONS, list(IDENTITY), seed)
    first, second = files
    alone = rule.assign(first, len(first["evt"]))
    together = {name: np.concatenate([first[name], second[name]]) for name in IDENTITY}
    both = rule.assign(together, len(together["evt"]))
    assert np.array_equal(both[: len(alone)], alone)
    # candidates of one event (same run, lumi, evt) share their split, whatever file holds them
    key = np.stack([together[name].astype(np.uint64) for name in IDENTITY], axis=1)
    _, event = np.unique(key, axis=0, return_inverse=True)
    event = event.ravel()
    splits_of_event = {(int(e), int(s)) for e, s in zip(event, both, strict=True)}
    assert len(splits_of_event) == len(np.unique(event))


@given(st.integers(0, 2**32), st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.5), (0.3, 0.2)]))
@settings(max_examples=20, deadline=None)
def test_fractions_hold_within_statistical_bounds(seed: int, fractions: tuple[float, ...]) -> None:
    n = 40_000
    rng = np.random.default_rng(seed)
    arrays = {
        "run": np.ones(n, np.uint32),
        "lumi": rng.integers(1, 1000, n).astype(np.uint32),
        "evt": np.arange(n, dtype=np.uint64) * 7919 + seed,  # every event distinct
    }
    names = [f"s{i}" for i in range(len(fractions))]
    split = split_rule(dict(zip(names, fractions, strict=True)), list(IDENTITY), seed).assign(
        arrays, n
    )
    for index, fraction in enumerate((*fractions, 1 - sum(fractions))):
        found = np.count_nonzero(split == (index if index < len(fractions) else -1))
        sigma = np.sqrt(n * fraction * (1 - fraction))
        assert abs(found - n * fraction) <= 5 * sigma + 1


def test_a_rule_puts_events_where_it_holds_in_the_first_split() -> None:
    rule = split_rule(["even", "odd"], "evt % 2 == 0", 0)
    evt = np.arange(10, dtype=np.uint64)
    assert rule.assign({"evt": evt}, 10).tolist() == [0, 1] * 5
    assert rule.branches == {"evt"}


def test_without_splits_everything_is_in_split_zero() -> None:
    rule = SplitRule()
    assert not rule.named and rule.n_splits == 1
    assert rule.assign({"x": np.arange(4)}, 4).tolist() == [0, 0, 0, 0]


def test_command_line_forms() -> None:
    assert parse_splits("train=0.8,validation=0.1,test=0.1") == {
        "train": 0.8,
        "validation": 0.1,
        "test": 0.1,
    }
    assert parse_splits("train,test") == ["train", "test"]
    assert parse_split_by("run, lumi,evt") == ["run", "lumi", "evt"]
    assert parse_split_by("evt % 2 == 0") == "evt % 2 == 0"
    with pytest.raises(ConfigError, match="train=x"):
        parse_splits("train=x,test=0.2")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"splits": {"train": 0.8, "test": 0.3}}, "add up to 1.1"),
        ({"splits": {"train": 0.8, "te st": 0.1}}, "'te st' must be letters"),
        ({"splits": {"train": 0}}, "must be in \\(0, 1\\]"),
        ({"splits": ["train", "test"]}, "names without fractions"),
        ({"splits": ["a", "b", "c"], "split_by": "evt % 3 == 0"}, "exactly two split names"),
        ({"splits": {"a": 0.5, "b": 0.5}, "split_by": "evt % 2 == 0"}, "no fractions"),
        ({"splits": {"a": 0.5}, "split_by": []}, "identify an event"),
    ],
)
def test_invalid_splits_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PlanConfig(**fields)


def test_events_in_two_splits_are_reported() -> None:
    config_rule = split_rule(FRACTIONS, list(IDENTITY), 0)
    selection = build_selection_with(config_rule)
    events_by_split = EventsBySplit(selection)
    rows = ak.Array({"run": [1, 1], "lumi": [2, 2], "evt": [5, 6]})
    events_by_split.add(0, rows[:1])
    events_by_split.add(2, rows)
    problems = events_by_split.shared(("train", "validation", "test"))
    assert problems == [
        "splits train and test share 1 events (by run, lumi, evt): no candidate may be used "
        "in two splits"
    ]


def build_selection_with(rule: SplitRule) -> Any:
    from dataclasses import replace

    from balanced_batches.config import ProjectConfig

    config = ProjectConfig.model_validate(
        {"binning": {"pt": [[20, 40, 10]], "abseta": [[0, 2, 1]]}}
    )
    return replace(build_selection(config), splits=rule)


# -- a whole production ---------------------------------------------------------------------------

BATCHES = 3


@pytest.fixture(scope="module")
def split_production(tmp_path_factory: pytest.TempPathFactory, dataset: Any) -> tuple[Path, Any]:
    """The test dataset counted with three splits, planned with 3 batches each and run,
    with weights."""
    workdir = tmp_path_factory.mktemp("splits") / "work"
    cli(*count_args(workdir, dataset.file_list), "--splits", "train=0.6,validation=0.15,test=0.25")
    cli(*reference_plan_args(workdir, batches=BATCHES), "--weights")
    cli("run", "--workdir", workdir, "--workers", 1)
    return workdir, dataset


def split_outputs(outdir: Path) -> dict[str, ak.Array]:
    return {
        split: ak.concatenate([read_output(p) for p in sorted((outdir / split).glob("*.root"))])
        for split in FRACTIONS
    }


def test_counts_per_split_add_up_to_the_files_counts(split_production: tuple[Path, Any]) -> None:
    workdir, dataset = split_production
    counts = json.loads((workdir / "counts.json").read_text())
    for path in dataset.paths:
        entry = next(e for e in counts.values() if e["path"] == path)
        with uproot.open(path) as handle:
            columns = handle[TREE].arrays(
                ["tau_pt", "tau_eta", "genLepton_index", "genLepton_kind"], library="np"
            )
        expected = region_counts(columns, BINNING)
        summed = {region: sum(entry[split][region] for split in FRACTIONS) for region in expected}
        assert summed == expected  # the fractions add up to 1: every candidate is in a split


def test_each_split_is_balanced_in_its_own_directory(split_production: tuple[Path, Any]) -> None:
    workdir, _ = split_production
    outdir = workdir / "batches"
    assert sorted(p.name for p in outdir.iterdir()) == sorted(FRACTIONS)
    for split, rows in split_outputs(outdir).items():
        provenance = json.loads((outdir / split / "provenance.json").read_text())
        assert provenance["split"] == split and provenance["split_batches"] == BATCHES
        cells: dict[tuple[int, int, int], int] = {}
        for key, region, batch in zip(
            rows["bb_process_key"].to_list(),
            rows["bb_region"].to_list(),
            rows["bb_batch"].to_list(),
            strict=True,
        ):
            cells[(key, region, batch)] = cells.get((key, region, batch), 0) + 1
        assert set(cells.values()) == {PER_BATCH}
        assert {batch for _, _, batch in cells} == set(range(BATCHES))
    result = cli("check", "--workdir", workdir)
    assert "all outputs match the plan" in result.stdout


def test_no_event_feeds_two_splits(split_production: tuple[Path, Any]) -> None:
    workdir, _ = split_production
    seen: dict[tuple[int, int, int], str] = {}
    for split, rows in split_outputs(workdir / "batches").items():
        for event in zip(
            rows["run"].to_list(), rows["lumi"].to_list(), rows["evt"].to_list(), strict=True
        ):
            assert seen.setdefault(event, split) == split


def test_weights_restore_the_input_counts(split_production: tuple[Path, Any]) -> None:
    workdir, _ = split_production
    counts = json.loads((workdir / "counts.json").read_text())
    provenance = json.loads((workdir / "batches" / "train" / "provenance.json").read_text())
    for split, rows in split_outputs(workdir / "batches").items():
        inputs: dict[tuple[str, str], int] = {}
        for entry in counts.values():
            if entry.get("pileup") != PILEUP:
                continue
            for region, n in entry[split].items():
                key = (f"{entry['process']}_{PILEUP}", region)
                inputs[key] = inputs.get(key, 0) + n
        weights: dict[tuple[str, str], float] = {}
        for key, region, weight in zip(
            rows["bb_process_key"].to_list(),
            rows["bb_region"].to_list(),
            rows["bb_weight"].to_list(),
            strict=True,
        ):
            label = (provenance["process_keys"][key], provenance["regions"][region])
            weights[label] = weights.get(label, 0.0) + weight
        for label, total in weights.items():
            assert total == pytest.approx(inputs[label], rel=1e-5), (split, label)


def test_statistics_describe_each_splits_outputs(split_production: tuple[Path, Any]) -> None:
    workdir, _ = split_production
    for split, rows in split_outputs(workdir / "batches").items():
        published = json.loads((workdir / "batches" / split / "statistics.json").read_text())
        assert published["split"] == split and published["rows"] == len(rows)
        assert sum(published["types"].values()) == len(rows)
        assert not {name for name in published["branches"] if name.startswith("bb_")}
        for name in ("tau_pt", "pfCand_pt"):
            values = ak.to_numpy(ak.flatten(rows[name], axis=None)).astype(np.float64)
            shown = published["branches"][name]
            assert shown["count"] == len(values)
            assert shown["mean"] == pytest.approx(values.mean(), rel=1e-9)
            assert shown["std"] == pytest.approx(values.std(), rel=1e-6)
            assert shown["min"] == pytest.approx(values.min())
            assert shown["max"] == pytest.approx(values.max())
            # quantiles within the sketch's rank error (1/1024 of the values, a few ranks more)
            # and, for branches of over 16,384 elements in a file, the sampling error of a
            # stride of at most 4 (pfCand_pt)
            ordered = np.sort(values)
            for q, value in shown["quantiles"].items():
                rank = np.searchsorted(ordered, value)
                sampling = 5 * np.sqrt(len(values) * float(q) * (1 - float(q)) * 4)
                assert abs(rank - float(q) * (len(values) - 1)) <= len(values) / 1024 + 8 + sampling


def test_exported_jobs_make_the_same_splits_as_run(
    tmp_path: Path, split_production: tuple[Path, Any]
) -> None:
    """Batch jobs, run one by one from the exported specification, write the same files into
    the same split directories, statistics.json included (published by the last write job)."""
    import balanced_batches as bb
    from faults_util import output_digests

    workdir, dataset = split_production
    wd = bb.Workdir.open(tmp_path / "work")
    wd.count(
        workers=1,
        campaign="prod_Phase2_v2",
        file_list=str(dataset.file_list),
        process_types=str(PROCESS_TYPES),
        binning=str(BINNING),
        splits=FRACTIONS,
    )
    wd.plan(
        pileup=PILEUP, events_per_batch_type=PER_BATCH, batches=BATCHES, seed=SEED, weights=True
    )
    exported = wd.export_jobs(tmp_path / "jobs", "slurm")
    for job in [*exported.read_jobs, *exported.write_jobs]:
        assert bb.run_exported_job(exported.directory / "spec.json", job)
    for split in FRACTIONS:
        ours, theirs = tmp_path / "work" / "batches" / split, workdir / "batches" / split
        assert output_digests(ours) == output_digests(theirs)
        assert (ours / "statistics.json").read_text() == (theirs / "statistics.json").read_text()
    assert len(wd.check(sample=20)) == 0


def test_report_shows_every_split_and_the_training_statistics(
    tmp_path: Path, split_production: tuple[Path, Any]
) -> None:
    workdir, _ = split_production
    cli("report", "--workdir", workdir, "--output", tmp_path / "report")
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Splits by event" in page and "Training statistics (train)" in page
    for split in FRACTIONS:
        assert f"<td>{split}</td>" in page
    assert "tau_pt" in page


def test_a_split_named_twice_is_refused_and_yaml_names_branches_as_the_cli() -> None:
    with pytest.raises(ConfigError, match="split 'train' is named twice"):
        parse_splits("train=0.5,train=0.3")
    config = PlanConfig(splits={"a": 0.5, "b": 0.5}, split_by="evt")
    assert config.split_by == ["evt"]
    assert PlanConfig(splits=["a", "b"], split_by="evt % 2 == 0").split_by == "evt % 2 == 0"


def test_summary_shows_every_split_and_its_distinct_share(
    split_production: tuple[Path, Any],
) -> None:
    workdir, _ = split_production
    shown = cli("summary", "--workdir", workdir, "--distinct").stdout
    for split in FRACTIONS:
        assert f"split {split}" in shown
        assert f"split {split}: {BATCHES} batches" in shown  # the plan's --batches, stored
    assert "100%" in shown and "distinct candidates:" in shown
