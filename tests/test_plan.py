"""Tests of plan_model.py and stages/plan.py: how many batches, and which candidate goes where."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from balanced_batches.catalog import Catalog, FileRecord
from balanced_batches.config import (
    Binning,
    ExecutionConfig,
    OutputConfig,
    PlanConfig,
    ProcessType,
    ProjectConfig,
)
from balanced_batches.errors import CatalogError, ConfigError, PlanError
from balanced_batches.plan_model import Plan, member_uses, members_uses
from balanced_batches.regions import build_selection
from balanced_batches.shuffle import permute, stream_key
from balanced_batches.stages.count import selection_fingerprint
from balanced_batches.stages.plan import (
    CountTable,
    build_plan,
    choose_batch_count,
    count_table,
    load_plan,
    ordered_keys,
    plan_batches,
    process_key,
)

TYPES = {"a": "x == 0", "b": "x == 1"}
BINNING = Binning(pt=[(20, 40, 10)], abseta=[(0, 2, 1)])  # 3 pT x 3 |eta| bins: 18 regions


def make_config(
    per_batch: int | None = 5,
    *,
    batches: int | None = None,
    max_reuse: int | None = None,
    seed: int = 1,
    pileup: str = "all",
    processes: dict[str, list[str]] | None = None,
    batches_per_file: int = 1,
    unit_memory_mb: int = 1024,
) -> ProjectConfig:
    processes = processes if processes is not None else {"P": ["a", "b"], "Q": ["a"], "R": ["b"]}
    return ProjectConfig(
        binning=BINNING,
        types=TYPES,
        processes={
            name: ProcessType(regex=name, active_types=act) for name, act in processes.items()
        },
        plan=PlanConfig(
            events_per_batch_type=per_batch,
            batches=batches,
            max_reuse=max_reuse,
            seed=seed,
            pileup=pileup,  # type: ignore[arg-type]
        ),
        output=OutputConfig(batches_per_file=batches_per_file),
        execution=ExecutionConfig(unit_memory_mb=unit_memory_mb),
    )


SPACE = build_selection(make_config()).space


def make_table(
    file_key: np.ndarray, file_counts: np.ndarray, active_types: np.ndarray, file_ids: np.ndarray
) -> CountTable:
    """A CountTable built by hand; `active_types` is (keys, types) bool."""
    n_keys = len(active_types)
    totals = np.zeros((n_keys, SPACE.n_regions), dtype=np.int64)
    for row, key in enumerate(file_key):
        if key >= 0:
            totals[key] += file_counts[row]
    region_type = SPACE.type_of(np.arange(SPACE.n_regions))
    active = active_types[:, region_type]
    keys = tuple(f"K{k}" for k in range(n_keys))
    return CountTable(SPACE, keys, totals, active, file_ids, file_key, file_counts)


def expected_batches(
    totals: list[int], per_batch: int, batches: int | None, max_reuse: int | None
) -> int | None:
    """The documented rule, or None when no plan can be made."""
    if not totals:
        return None
    count = batches if batches is not None else max(totals) // per_batch
    if max_reuse is not None:
        limit = max_reuse * min(totals) // per_batch
        if batches is not None and batches > limit:
            return None
        count = min(count, limit)
    return count or None


@dataclass
class Uses:
    """Every use of every candidate of one stream."""

    candidate: np.ndarray  # stream candidate index of each use
    position: np.ndarray  # position in the stream's (repeated) order


def stream_uses(plan: Plan, stream: int) -> Uses:
    candidates, positions = [], []
    for member in range(plan.member_ptr[stream], plan.member_ptr[stream + 1]):
        ranks, where = plan.uses_of_member(member)
        candidates.append(plan.member_offset[member] + ranks)
        positions.append(where)
    return Uses(np.concatenate(candidates), np.concatenate(positions))


def check_plan(plan: Plan, table: CountTable, config: ProjectConfig) -> None:
    """Every invariant of a plan against the table it was made from."""
    per_batch = config.plan.events_per_batch_type
    assert per_batch is not None
    streams = [
        (k, r)
        for k in range(len(table.keys))
        for r in range(SPACE.n_regions)
        if table.active[k, r] and table.totals[k, r] > 0
    ]
    assert plan.n_streams == len(streams)
    needed = plan.n_batches * per_batch
    for s, (k, r) in enumerate(streams):
        assert plan.stream_label(s) == (table.keys[k], SPACE.name(r))
        # members: the stream's files in list order, with their counts
        rows = [
            i
            for i in range(len(table.file_ids))
            if table.file_key[i] == k and table.file_counts[i, r] > 0
        ]
        members = slice(plan.member_ptr[s], plan.member_ptr[s + 1])
        assert plan.member_file[members].tolist() == table.file_ids[rows].tolist()
        assert plan.member_count[members].tolist() == table.file_counts[rows, r].tolist()
        counts = table.file_counts[rows, r]
        assert plan.member_offset[members].tolist() == (np.cumsum(counts) - counts).tolist()
        total = int(table.totals[k, r])
        assert plan.stream_total[s] == total

        uses = stream_uses(plan, s)
        # positions 0 .. n_batches*N - 1, each exactly once: N per batch
        assert np.array_equal(np.sort(uses.position), np.arange(needed))
        # every candidate used floor or ceil of needed/total times, so reuse only where needed
        used = np.bincount(uses.candidate, minlength=total)
        assert len(used) == total
        assert used.min() == needed // total
        assert used.max() == -(-needed // total)
        if total >= needed:
            assert used.max() <= 1
        if config.plan.max_reuse is not None:
            assert used.max() <= config.plan.max_reuse
        # candidates_of_batch agrees with uses_of_member
        at_position = np.empty(needed, dtype=np.int64)
        at_position[uses.position] = uses.candidate
        for batch in range(plan.n_batches):
            taken = plan.candidates_of_batch(s, batch)
            assert (
                taken.tolist() == at_position[batch * per_batch : (batch + 1) * per_batch].tolist()
            )


@st.composite
def tables(draw: st.DrawFn) -> tuple[CountTable, ProjectConfig]:
    n_keys = draw(st.integers(1, 3))
    n_files = draw(st.integers(1, 6))
    file_key = draw(
        hnp.arrays(
            np.int64,
            n_files,
            elements=st.integers(-1, 2 * n_keys - 1).map(lambda k: k % n_keys if k >= 0 else -1),
            fill=st.nothing(),
        )
    )
    counts = draw(
        hnp.arrays(
            np.int64,
            (n_files, SPACE.n_regions),
            elements=st.integers(-40, 40).map(lambda v: max(v, 0)),
            fill=st.nothing(),
        )
    )
    active_types = draw(hnp.arrays(np.bool_, (n_keys, 2), fill=st.nothing()))
    active_types[0, draw(st.integers(0, 1))] = True
    file_ids = np.array(draw(st.permutations(range(1, 30)))[:n_files], dtype=np.int64)
    config = make_config(
        draw(st.integers(1, 12)),
        batches=draw(st.none() | st.integers(1, 8)),
        max_reuse=draw(st.none() | st.integers(1, 40)),
        seed=draw(st.integers(0, 2**31)),
    )
    return make_table(file_key, counts, active_types, file_ids), config


@given(tables())
@settings(max_examples=80, deadline=None)
def test_plan_invariants(case: tuple[CountTable, ProjectConfig]) -> None:
    table, config = case
    per_batch = config.plan.events_per_batch_type
    assert per_batch is not None
    totals = [int(table.totals[k, r]) for k, r in table.streams]
    expected = expected_batches(totals, per_batch, config.plan.batches, config.plan.max_reuse)
    if expected is None:
        with pytest.raises(PlanError):
            build_plan(table, config, bytes_per_entry=100.0)
        return
    plan = build_plan(table, config, bytes_per_entry=100.0)
    assert plan.n_batches == expected
    assert plan.per_batch == per_batch
    assert plan.seed == config.plan.seed
    check_plan(plan, table, config)
    assert plan.reuse().tolist() == pytest.approx([expected * per_batch / t for t in totals])
    assert plan.read_files.tolist() == sorted(set(plan.member_file.tolist()))

    again = Plan.from_arrays(*plan.to_arrays())
    for stream in range(plan.n_streams):
        a, b = stream_uses(plan, stream), stream_uses(again, stream)
        assert np.array_equal(a.candidate, b.candidate)
        assert np.array_equal(a.position, b.position)


# -- a fixed example -----------------------------------------------------------


def example_table() -> CountTable:
    """Two keys; key 0 has dense and sparse streams spread over three files."""
    counts = np.zeros((4, SPACE.n_regions), dtype=np.int64)
    counts[0, 0], counts[1, 0], counts[3, 0] = 400, 250, 350  # 1000 candidates
    counts[0, 1], counts[3, 1] = 3, 4  # 7 candidates: heavily reused
    counts[1, 9] = 120  # type b
    counts[2, 0] = 500  # key 1
    file_key = np.array([0, 0, 1, 0])
    active = np.array([[True, True], [True, False]])
    return make_table(file_key, counts, active, np.array([11, 12, 13, 14]))


def test_example_plan() -> None:
    table = example_table()
    config = make_config(50)
    plan = build_plan(table, config, bytes_per_entry=100.0)
    assert plan.n_batches == 1000 // 50
    assert [plan.stream_label(s) for s in range(plan.n_streams)] == [
        ("K0", SPACE.name(0)),
        ("K0", SPACE.name(1)),
        ("K0", SPACE.name(9)),
        ("K1", SPACE.name(0)),
    ]
    assert plan.member_ptr.tolist() == [0, 3, 5, 6, 7]
    assert plan.member_file.tolist() == [11, 12, 14, 11, 14, 12, 13]
    assert plan.stream_total.tolist() == [1000, 7, 120, 500]
    check_plan(plan, table, config)
    # the sparse stream is reused ceil(1000 / 7) = 143 or 142 times per candidate
    used = np.bincount(stream_uses(plan, 1).candidate)
    assert sorted(set(used.tolist())) == [142, 143]


def test_batches_are_shuffled_across_files() -> None:
    table = example_table()
    plan = build_plan(table, make_config(50), bytes_per_entry=100.0)
    first = plan.candidates_of_batch(0, 0)
    # a batch of 50 from 1000 candidates in three files is not one contiguous run
    assert len(set((first // 100).tolist())) > 3
    assert not np.array_equal(np.sort(first), np.arange(first.min(), first.min() + 50))


def test_plan_is_deterministic_for_a_seed_and_differs_for_another() -> None:
    table = example_table()
    one = build_plan(table, make_config(50, seed=3), bytes_per_entry=100.0)
    same = build_plan(table, make_config(50, seed=3), bytes_per_entry=100.0)
    other = build_plan(table, make_config(50, seed=4), bytes_per_entry=100.0)
    for stream in range(one.n_streams):
        for batch in (0, 7):
            assert np.array_equal(
                one.candidates_of_batch(stream, batch), same.candidates_of_batch(stream, batch)
            )
        a, b = stream_uses(one, stream), stream_uses(same, stream)
        assert np.array_equal(a.position, b.position)
        assert not np.array_equal(
            one.candidates_of_batch(stream, 0), other.candidates_of_batch(stream, 0)
        )


def test_a_streams_order_does_not_depend_on_other_streams() -> None:
    table = example_table()
    counts = np.vstack([table.file_counts, np.zeros((1, SPACE.n_regions), dtype=np.int64)])
    counts[4, [0, 3, 9]] = [40, 2, 17]
    bigger = make_table(
        np.append(table.file_key, 2),
        counts,
        np.array([[True, True], [True, False], [True, True]]),
        np.append(table.file_ids, 99),
    )
    one = build_plan(table, make_config(50), bytes_per_entry=100.0)
    two = build_plan(bigger, make_config(50), bytes_per_entry=100.0)
    assert two.n_batches == one.n_batches
    assert two.n_streams == one.n_streams + 3
    labels = [two.stream_label(s) for s in range(two.n_streams)]
    for stream in range(one.n_streams):
        same = labels.index(one.stream_label(stream))
        for batch in range(one.n_batches):
            assert np.array_equal(
                one.candidates_of_batch(stream, batch), two.candidates_of_batch(same, batch)
            )


def test_plan_round_trips_through_the_catalog(tmp_path: Path) -> None:
    plan = build_plan(example_table(), make_config(50, seed=9), bytes_per_entry=100.0)
    parameters, arrays = plan.to_arrays()
    catalog = Catalog.open(tmp_path, create=True)
    catalog.put_arrays("plan", arrays)
    catalog.set_meta("plan", parameters)
    catalog.close()
    catalog = Catalog.open(tmp_path)
    loaded = Plan.from_arrays(catalog.get_meta("plan"), catalog.get_arrays("plan"))
    catalog.close()
    assert loaded.to_arrays()[0] == parameters
    assert json.loads(json.dumps(parameters)) == parameters
    for name, array in arrays.items():
        assert np.array_equal(getattr(loaded, name), array)
        assert getattr(loaded, name).dtype == array.dtype
    for stream in range(plan.n_streams):
        assert np.array_equal(
            plan.candidates_of_batch(stream, 3), loaded.candidates_of_batch(stream, 3)
        )


def test_max_reuse_caps_the_batches() -> None:
    table = example_table()
    plan = build_plan(table, make_config(5, max_reuse=3), bytes_per_entry=100.0)
    assert plan.n_batches == 3 * 7 // 5
    check_plan(plan, table, make_config(5, max_reuse=3))


def test_no_events_per_batch_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="events per batch type"):
        build_plan(example_table(), make_config(None), bytes_per_entry=100.0)


def test_no_active_stream_is_a_plan_error() -> None:
    table = example_table()
    inactive = CountTable(
        table.space,
        table.keys,
        table.totals,
        np.zeros_like(table.active),
        table.file_ids,
        table.file_key,
        table.file_counts,
    )
    with pytest.raises(PlanError, match="active"):
        build_plan(inactive, make_config(5), bytes_per_entry=100.0)


@pytest.mark.parametrize("batches_per_file", [1, 3])
@pytest.mark.parametrize("unit_memory_mb", [1, 1024])
def test_write_units_cover_every_output_file(batches_per_file: int, unit_memory_mb: int) -> None:
    config = make_config(50, batches_per_file=batches_per_file, unit_memory_mb=unit_memory_mb)
    plan = build_plan(example_table(), config, bytes_per_entry=100.0)
    assert plan.n_output_files == -(-plan.n_batches // batches_per_file)
    assert plan.files_per_unit >= 1
    assert plan.n_write_units * plan.files_per_unit >= plan.n_output_files
    assert (plan.n_write_units - 1) * plan.files_per_unit < plan.n_output_files
    rows_per_unit = plan.files_per_unit * batches_per_file * 50 * plan.n_streams
    if plan.files_per_unit > 1:  # grouping files never exceeds the memory budget
        assert rows_per_unit * 100.0 * 3.0 <= unit_memory_mb * 2**20


# -- choose_batch_count --------------------------------------------------------


def test_original_rule_is_int_of_largest_over_n() -> None:
    assert choose_batch_count(np.array([25, 7, 1000]), 10, None, None) == 100
    assert choose_batch_count(np.array([25, 7, 1009]), 10, None, None) == 100
    assert choose_batch_count(np.array([10]), 10, None, None) == 1


def test_batches_overrides_the_rule() -> None:
    assert choose_batch_count(np.array([25, 7, 1000]), 10, 3, None) == 3
    assert choose_batch_count(np.array([25, 7, 1000]), 10, 500, None) == 500


def test_max_reuse_caps_the_rule() -> None:
    # the sparsest region has 7 candidates: 2 uses each allow 14 / 10 = 1 batch
    assert choose_batch_count(np.array([1000, 7]), 10, None, 2) == 1
    assert choose_batch_count(np.array([1000, 70]), 10, None, 2) == 14
    # a cap that does not bind changes nothing
    assert choose_batch_count(np.array([1000, 700]), 10, None, 2) == 100
    assert choose_batch_count(np.array([1000, 70]), 10, 5, 2) == 5


def test_batches_beyond_max_reuse_names_the_values() -> None:
    with pytest.raises(PlanError) as info:
        choose_batch_count(np.array([1000, 7]), 10, 2, 2)
    message = str(info.value)
    for part in ("--batches 2", "7 candidates", "--max-reuse 2", "at most 1"):
        assert part in message


def test_zero_batches_names_the_values() -> None:
    with pytest.raises(PlanError) as info:
        choose_batch_count(np.array([9, 3]), 10, None, None)
    assert "9 candidates" in str(info.value)
    assert "10" in str(info.value)


def test_max_reuse_leaving_zero_batches_names_the_values() -> None:
    with pytest.raises(PlanError) as info:
        choose_batch_count(np.array([1000, 3]), 10, None, 2)
    message = str(info.value)
    assert "--max-reuse 2" in message
    assert "3 candidates" in message
    assert "10" in message


def test_zero_batches_not_caused_by_max_reuse_does_not_blame_it() -> None:
    """Largest region 5 < N = 10: there is no batch with or without --max-reuse 3.

    5 candidates used 3 times would cover 15 >= 10 slots, so --max-reuse is not the cause;
    the message must not say it is.
    """
    with pytest.raises(PlanError) as without:
        choose_batch_count(np.array([5]), 10, None, None)
    with pytest.raises(PlanError) as info:
        choose_batch_count(np.array([5]), 10, None, 3)
    assert "--max-reuse" not in str(info.value)
    assert str(info.value) == str(without.value)


def test_no_streams_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="no active region"):
        choose_batch_count(np.array([], dtype=np.int64), 10, None, None)


# -- process keys --------------------------------------------------------------


def record(process: str | None, pileup: str | None, file_id: int = 1) -> FileRecord:
    return FileRecord(
        file_id,
        f"/f{file_id}.root",
        f"f{file_id}",
        file_id,
        process,
        pileup,
        None,
        None,
        None,
        None,
        None,
        "counted",
        None,
    )


@pytest.mark.parametrize(
    ("process", "pileup", "choice", "expected"),
    [
        ("DY", "PU200", "all", "DY_PU200"),
        ("DY", "PU200", "PU200", "DY_PU200"),
        ("DY", "PU200", "PU140", None),
        ("DY", "NoPU", "NoPU", "DY_NoPU"),
        ("DY", "PU140", "none", "DY"),
        ("DY", None, "none", "DY"),
        ("DY", None, "all", None),
        ("DY", None, "NoPU", None),
        (None, "PU200", "all", None),
        (None, "PU200", "none", None),
        ("ZprimeToEE_M-6000", "PU140", "all", "ZprimeToEE_M-6000_PU140"),
    ],
)
def test_process_key(
    process: str | None, pileup: str | None, choice: str, expected: str | None
) -> None:
    assert process_key(record(process, pileup), choice) == expected


def test_ordered_keys() -> None:
    config = make_config(processes={"DY": ["a"], "QCD": ["b"]})
    assert ordered_keys(config, "all") == [
        "DY_NoPU",
        "DY_PU140",
        "DY_PU200",
        "QCD_NoPU",
        "QCD_PU140",
        "QCD_PU200",
    ]
    assert ordered_keys(config, "PU140") == ["DY_PU140", "QCD_PU140"]
    assert ordered_keys(config, "none") == ["DY", "QCD"]


# -- count_table and plan_batches on a real catalog -----------------------------


FILES = [  # (path, process, pileup, {region: count})
    ("/d/DY_PU200_1.root", "DY", "PU200", {0: 30, 1: 2, 9: 12}),
    ("/d/QCD_PU200_1.root", "QCD", "PU200", {0: 50, 9: 40}),
    ("/d/DY_NoPU_1.root", "DY", "NoPU", {0: 7}),
    ("/d/DY_PU200_2.root", "DY", "PU200", {0: 25, 10: 3}),
    ("/d/other.root", None, None, {0: 99}),
    ("/d/DY_PU140_bad.root", "DY", "PU140", {}),
]


def filled_catalog(workdir: Path, config: ProjectConfig) -> Catalog:
    """A catalog with FILES counted under the configuration's selection (the last one bad)."""
    catalog = Catalog.open(workdir, create=True)
    selection = build_selection(config)
    catalog.set_meta("selection", selection_fingerprint(selection, config.inputs.tree))
    catalog.sync_file_list([(path, Path(path).name, proc, pu) for path, proc, pu, _ in FILES])
    for record_, (_, _, _, counts) in zip(catalog.files(), FILES, strict=True):
        if not counts:
            catalog.record_bad_file(record_.id, "cannot open")
            continue
        vector = np.zeros(selection.space.n_regions, dtype=np.int64)
        for region, n in counts.items():
            vector[region] = n
        catalog.record_count(
            record_.id,
            size=1000,
            mtime=1.0,
            entries=int(vector.sum()) + 5,
            bytes_per_entry=200.0,
            selection_hash="h",
            counts=vector,
        )
    return catalog


def test_count_table_aggregates_by_process_key(tmp_path: Path) -> None:
    config = make_config(5, processes={"DY": ["a", "b"], "QCD": ["b"]})
    catalog = filled_catalog(tmp_path, config)
    ids = [r.id for r in catalog.files()]
    table = count_table(catalog, config, "all")
    assert table.keys == ("DY_NoPU", "DY_PU140", "DY_PU200", "QCD_NoPU", "QCD_PU140", "QCD_PU200")
    assert table.file_ids.tolist() == ids[:5]  # the bad file is not counted
    assert table.file_key.tolist() == [2, 5, 0, 2, -1]
    assert table.totals[2, [0, 1, 9, 10]].tolist() == [55, 2, 12, 3]
    assert table.totals[0, 0] == 7
    assert table.totals[5, [0, 9]].tolist() == [50, 40]
    assert table.totals.sum() == 55 + 2 + 12 + 3 + 7 + 90
    region_type = SPACE.type_of(np.arange(SPACE.n_regions))
    assert table.active[2].tolist() == [True] * SPACE.n_regions
    assert table.active[5].tolist() == (region_type == 1).tolist()
    assert [tuple(s) for s in table.streams.tolist()] == [
        (0, 0),
        (2, 0),
        (2, 1),
        (2, 9),
        (2, 10),
        (5, 9),
    ]
    catalog.close()


def test_count_table_for_one_pileup_and_for_none(tmp_path: Path) -> None:
    config = make_config(5, processes={"DY": ["a", "b"], "QCD": ["b"]})
    catalog = filled_catalog(tmp_path, config)
    one = count_table(catalog, config, "PU200")
    assert one.keys == ("DY_PU200", "QCD_PU200")
    assert one.file_key.tolist() == [0, 1, -1, 0, -1]
    merged = count_table(catalog, config, "none")
    assert merged.keys == ("DY", "QCD")
    assert merged.file_key.tolist() == [0, 1, 0, 0, -1]
    assert merged.totals[0, 0] == 30 + 7 + 25
    catalog.close()


def test_count_table_refuses_counts_of_another_selection(tmp_path: Path) -> None:
    config = make_config(5)
    catalog = filled_catalog(tmp_path, config)
    other = config.model_copy(update={"binning": Binning(pt=[(20, 50, 10)], abseta=[(0, 2, 1)])})
    with pytest.raises(CatalogError, match="count"):
        count_table(catalog, other, "all")
    catalog.close()


def test_plan_refuses_unreadable_files_unless_they_are_skipped(tmp_path: Path) -> None:
    config = make_config(5, seed=77, processes={"DY": ["a", "b"], "QCD": ["b"]})
    catalog = filled_catalog(tmp_path, config)
    catalog.set_meta("on_bad_file", "fail")
    with pytest.raises(CatalogError, match=r"could not be counted.*--on-bad-file skip"):
        plan_batches(catalog, config, tmp_path)
    assert not (tmp_path / "summary.json").exists()
    catalog.close()


def test_plan_batches_end_to_end(tmp_path: Path) -> None:
    config = make_config(5, seed=77, processes={"DY": ["a", "b"], "QCD": ["b"]})
    catalog = filled_catalog(tmp_path, config)
    catalog.set_meta("on_bad_file", "skip")
    plan = plan_batches(catalog, config, tmp_path)
    assert (tmp_path / "batches").is_dir()  # a relative output directory is under the workdir
    # the largest active stream is DY_PU200 region 0 with 55 candidates: 11 batches of 5
    assert plan.n_batches == 11
    assert plan.n_streams == 6
    loaded = load_plan(catalog)
    assert loaded.to_arrays()[0] == plan.to_arrays()[0]
    for stream in range(plan.n_streams):
        assert np.array_equal(
            loaded.candidates_of_batch(stream, 10), plan.candidates_of_batch(stream, 10)
        )
    assert catalog.unit_states("read") == dict.fromkeys(range(len(plan.read_files)), "pending")
    assert catalog.unit_states("write") == dict.fromkeys(range(plan.n_write_units), "pending")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"DY_PU200", "QCD_PU200", "DY_NoPU"}
    assert summary["DY_PU200"][SPACE.name(0)] == 55
    assert summary["QCD_PU200"][SPACE.name(9)] == 40
    assert sum(summary["DY_NoPU"].values()) == 7
    catalog.close()


def test_load_plan_without_a_plan_is_a_catalog_error(tmp_path: Path) -> None:
    catalog = Catalog.open(tmp_path, create=True)
    with pytest.raises(CatalogError, match="no plan"):
        load_plan(catalog)
    catalog.close()


@settings(max_examples=60, deadline=None)
@given(
    members=st.lists(
        st.tuples(st.integers(1, 40), st.integers(0, 40), st.integers(0, 30)),
        min_size=1,
        max_size=6,
    ),
    needed=st.integers(1, 200),
)
def test_uses_of_many_members_at_once_are_those_of_each_member(
    members: list[tuple[int, int, int]], needed: int
) -> None:
    """The vectorised planning of a file's uses gives, member by member, exactly the rule's
    uses (streams of different sizes and keys, reuse included)."""
    totals = np.array(
        [count + extra_before + extra_after for count, extra_before, extra_after in members]
    )
    offsets = np.array([extra_before for _, extra_before, _ in members])
    counts = np.array([count for count, _, _ in members])
    keys = np.array([stream_key(3, "key", f"region{i}") for i in range(len(members))])
    member, ranks, positions = members_uses(offsets, counts, totals, needed, keys)
    for index in range(len(members)):
        # the rule, written out: candidate c is used at permute(c) + m * total below `needed`
        total, offset, count = int(totals[index]), int(offsets[index]), int(counts[index])
        first = permute(np.arange(offset, offset + count), total, keys[index])
        expected = sorted(
            (int(p) + total * m, rank)
            for rank, p in enumerate(first)
            for m in range(-(-needed // total))
            if int(p) + total * m < needed
        )
        mine = member == index
        assert sorted(zip(positions[mine].tolist(), ranks[mine].tolist(), strict=True)) == expected
        single = member_uses(offset, count, total, needed, keys[index])
        assert np.array_equal(single[0], ranks[mine]) and np.array_equal(single[1], positions[mine])
