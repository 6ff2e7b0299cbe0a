"""Tests of catalog.py on a real SQLite file in tmp_path."""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from balanced_batches.catalog import CATALOG_NAME, SCHEMA_VERSION, Catalog
from balanced_batches.errors import CatalogError

N_REGIONS = 12


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    opened = Catalog.open(tmp_path / "work", create=True)
    yield opened
    opened.close()


def entries(*paths: str) -> list[tuple[str, str, str | None, str | None]]:
    """(path, name, process, pileup) rows; the process is the file's stem before '_'."""
    return [(p, p.rsplit("/", 1)[-1], p.rsplit("/", 1)[-1].split("_")[0], "PU200") for p in paths]


def counted(catalog: Catalog, file_id: int, counts: dict[int, int]) -> np.ndarray:
    vector = np.zeros(N_REGIONS, dtype=np.int64)
    for region, n in counts.items():
        vector[region] = n
    catalog.record_count(
        file_id,
        size=123,
        mtime=4.5,
        entries=int(vector.sum()) + 1,
        bytes_per_entry=250.0,
        selection_hash="abc",
        counts=vector,
    )
    return vector


def ids_by_path(catalog: Catalog) -> dict[str, int]:
    return {record.path: record.id for record in catalog.files()}


# -- opening -------------------------------------------------------------------


def test_open_without_create_on_an_empty_dir_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as info:
        Catalog.open(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "count" in str(info.value)
    assert not (tmp_path / CATALOG_NAME).exists()


def test_open_with_create_makes_the_directory_and_reopens(tmp_path: Path) -> None:
    workdir = tmp_path / "a" / "b"
    catalog = Catalog.open(workdir, create=True)
    catalog.set_meta("answer", {"value": [1, 2.5, "x", None]})
    catalog.close()
    assert (workdir / CATALOG_NAME).is_file()
    again = Catalog.open(workdir)
    assert again.get_meta("answer") == {"value": [1, 2.5, "x", None]}
    assert again.get_meta("schema_version") == SCHEMA_VERSION
    again.close()


def test_other_schema_version_is_a_catalog_error(tmp_path: Path) -> None:
    catalog = Catalog.open(tmp_path, create=True)
    catalog.set_meta("schema_version", 99)
    catalog.close()
    with pytest.raises(CatalogError, match="schema 99"):
        Catalog.open(tmp_path)


def test_meta_set_replace_delete(catalog: Catalog) -> None:
    assert catalog.get_meta("plan") is None
    catalog.set_meta("plan", {"seed": 1})
    catalog.set_meta("plan", {"seed": 2})
    assert catalog.get_meta("plan") == {"seed": 2}
    catalog.delete_meta("plan")
    assert catalog.get_meta("plan") is None


# -- files ---------------------------------------------------------------------


def test_sync_file_list_adds_files_in_list_order(catalog: Catalog) -> None:
    catalog.sync_file_list(entries("/d/DY_1.root", "/d/QCD_1.root", "/d/TT_1.root"))
    records = catalog.files()
    assert [r.path for r in records] == ["/d/DY_1.root", "/d/QCD_1.root", "/d/TT_1.root"]
    assert [r.list_index for r in records] == [0, 1, 2]
    assert [r.process for r in records] == ["DY", "QCD", "TT"]
    assert {r.status for r in records} == {"pending"}
    assert len({r.id for r in records}) == 3
    assert records[0].entries is None


def test_sync_file_list_reorders_keeping_ids_and_counts(catalog: Catalog) -> None:
    catalog.sync_file_list(entries("/d/A_1.root", "/d/B_1.root", "/d/C_1.root"))
    before = ids_by_path(catalog)
    counted(catalog, before["/d/B_1.root"], {3: 5})
    catalog.sync_file_list(entries("/d/C_1.root", "/d/A_1.root", "/d/B_1.root"))
    records = catalog.files()
    assert [r.path for r in records] == ["/d/C_1.root", "/d/A_1.root", "/d/B_1.root"]
    assert [r.list_index for r in records] == [0, 1, 2]
    assert ids_by_path(catalog) == before
    file_ids, matrix = catalog.counts_matrix(N_REGIONS)
    assert file_ids.tolist() == [before["/d/B_1.root"]]
    assert matrix[0, 3] == 5
    assert records[2].status == "counted"


def test_sync_file_list_removes_files_and_their_counts(catalog: Catalog) -> None:
    catalog.sync_file_list(entries("/d/A_1.root", "/d/B_1.root"))
    ids = ids_by_path(catalog)
    counted(catalog, ids["/d/A_1.root"], {0: 1})
    counted(catalog, ids["/d/B_1.root"], {1: 2})
    catalog.sync_file_list(entries("/d/B_1.root", "/d/D_1.root"))
    assert [r.path for r in catalog.files()] == ["/d/B_1.root", "/d/D_1.root"]
    file_ids, matrix = catalog.counts_matrix(N_REGIONS)
    assert file_ids.tolist() == [ids["/d/B_1.root"]]
    assert matrix.tolist() == [[0, 2] + [0] * (N_REGIONS - 2)]
    # no orphaned counts are left behind
    db = sqlite3.connect(catalog.path)
    assert db.execute(
        "SELECT COUNT(*) FROM counts WHERE file_id = ?", (ids["/d/A_1.root"],)
    ).fetchone() == (0,)
    db.close()
    # a re-added file starts afresh
    catalog.sync_file_list(entries("/d/A_1.root", "/d/B_1.root"))
    readded = next(r for r in catalog.files() if r.path == "/d/A_1.root")
    assert readded.status == "pending"
    assert catalog.counts_matrix(N_REGIONS)[0].tolist() == [ids["/d/B_1.root"]]


def test_sync_file_list_updates_name_process_and_pileup(catalog: Catalog) -> None:
    catalog.sync_file_list([("/d/x.root", "x", "DY", "PU200")])
    catalog.sync_file_list([("/d/x.root", "prod/x", None, None)])
    (record,) = catalog.files()
    assert (record.name, record.process, record.pileup) == ("prod/x", None, None)


def test_sync_to_an_empty_list_removes_everything(catalog: Catalog) -> None:
    catalog.sync_file_list(entries("/d/A_1.root"))
    counted(catalog, catalog.files()[0].id, {2: 3})
    catalog.sync_file_list([])
    assert catalog.files() == []
    file_ids, matrix = catalog.counts_matrix(N_REGIONS)
    assert file_ids.tolist() == []
    assert matrix.shape == (0, N_REGIONS)


# -- counts --------------------------------------------------------------------


def test_record_count_and_counts_matrix(catalog: Catalog) -> None:
    catalog.sync_file_list(entries("/d/A_1.root", "/d/B_1.root", "/d/C_1.root", "/d/D_1.root"))
    ids = [r.id for r in catalog.files()]
    a = counted(catalog, ids[0], {0: 10, 5: 3, 11: 1})
    c = counted(catalog, ids[2], {5: 7})
    d = counted(catalog, ids[3], {})
    file_ids, matrix = catalog.counts_matrix(N_REGIONS)
    assert file_ids.tolist() == [ids[0], ids[2], ids[3]]  # B is still pending
    assert matrix.dtype == np.int64
    assert np.array_equal(matrix, np.vstack([a, c, d]))
    record = catalog.files()[0]
    assert (record.size, record.mtime, record.entries) == (123, 4.5, 15)
    assert (record.bytes_per_entry, record.selection_hash, record.status) == (
        250.0,
        "abc",
        "counted",
    )


def test_recounting_replaces_the_counts(catalog: Catalog) -> None:
    catalog.sync_file_list(entries("/d/A_1.root"))
    file_id = catalog.files()[0].id
    counted(catalog, file_id, {0: 10, 5: 3})
    second = counted(catalog, file_id, {5: 1, 6: 2})
    assert np.array_equal(catalog.counts_matrix(N_REGIONS)[1], second[None, :])


def test_bad_file_drops_its_counts(catalog: Catalog) -> None:
    catalog.sync_file_list(entries("/d/A_1.root", "/d/B_1.root"))
    ids = [r.id for r in catalog.files()]
    counted(catalog, ids[0], {0: 4})
    counted(catalog, ids[1], {0: 5})
    catalog.record_bad_file(ids[0], "not a ROOT file")
    record = catalog.files()[0]
    assert (record.status, record.error) == ("bad", "not a ROOT file")
    file_ids, matrix = catalog.counts_matrix(N_REGIONS)
    assert file_ids.tolist() == [ids[1]]
    assert matrix[:, 0].tolist() == [5]
    # counting it successfully later clears the error
    counted(catalog, ids[0], {1: 1})
    assert catalog.files()[0].error is None
    assert catalog.counts_matrix(N_REGIONS)[0].tolist() == ids


# -- arrays --------------------------------------------------------------------


@given(
    arrays=st.dictionaries(
        st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True),
        hnp.arrays(
            st.sampled_from([np.int32, np.int64, np.float64, np.bool_, np.uint64]),
            hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=6),
        ),
        max_size=4,
    )
)
@settings(max_examples=40, deadline=None)
def test_put_get_arrays_round_trip(arrays: dict[str, np.ndarray]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        catalog = Catalog.open(Path(directory), create=True)
        catalog.put_arrays("plan", arrays)
        back = catalog.get_arrays("plan")
        catalog.close()
    assert set(back) == set(arrays)
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype
        assert back[name].shape == array.shape
        assert np.array_equal(back[name], array, equal_nan=array.dtype.kind == "f")


def test_zero_dimensional_array_keeps_its_shape(catalog: Catalog) -> None:
    catalog.put_arrays("plan", {"scalar": np.array(7, dtype=np.int64)})
    back = catalog.get_arrays("plan")["scalar"]
    assert back.shape == ()
    assert back == 7


def test_put_arrays_replaces_every_array_of_the_prefix(catalog: Catalog) -> None:
    catalog.put_arrays("plan", {"a": np.arange(3), "b": np.ones(2)})
    catalog.put_arrays("other", {"a": np.arange(5)})
    catalog.put_arrays("plan", {"c": np.zeros(1, dtype=np.int32)})
    assert set(catalog.get_arrays("plan")) == {"c"}
    assert catalog.get_arrays("other")["a"].tolist() == [0, 1, 2, 3, 4]
    assert catalog.get_arrays("missing") == {}


def test_non_contiguous_arrays_are_stored(catalog: Catalog) -> None:
    array = np.arange(20).reshape(4, 5)[:, ::2]
    catalog.put_arrays("plan", {"x": array})
    assert np.array_equal(catalog.get_arrays("plan")["x"], array)


@pytest.mark.parametrize(("first", "second"), [("a_b", "axb"), ("plan", "PLAN")])
def test_array_prefixes_are_independent(catalog: Catalog, first: str, second: str) -> None:
    """Prefixes are names, not patterns: one never sees or deletes another's arrays."""
    catalog.put_arrays(second, {"y": np.arange(2)})
    catalog.put_arrays(first, {"x": np.arange(3)})
    assert set(catalog.get_arrays(first)) == {"x"}
    assert set(catalog.get_arrays(second)) == {"y"}


# -- work units ----------------------------------------------------------------


def test_units_start_pending(catalog: Catalog) -> None:
    catalog.reset_units({"read": 3, "write": 2})
    assert catalog.unit_states("read") == {0: "pending", 1: "pending", 2: "pending"}
    assert catalog.unit_states("write") == {0: "pending", 1: "pending"}
    assert catalog.unit_states("other") == {}
    assert catalog.unit_rows() == [
        ("read", 0, "pending", 0, None, None),
        ("read", 1, "pending", 0, None, None),
        ("read", 2, "pending", 0, None, None),
        ("write", 0, "pending", 0, None, None),
        ("write", 1, "pending", 0, None, None),
    ]


def test_failures_count_attempts_and_results_are_kept(catalog: Catalog) -> None:
    catalog.reset_units({"read": 2})
    catalog.set_unit("read", 0, "running")
    catalog.set_unit("read", 0, "failed", error="timeout")
    catalog.set_unit("read", 0, "failed", error="timeout again")
    catalog.set_unit("read", 0, "running")
    catalog.set_unit("read", 0, "done", result={"rows": 10, "files": ["a"]})
    catalog.set_unit("read", 1, "failed", error="boom")
    rows = {
        index: (status, attempts, error)
        for _, index, status, attempts, error, _ in catalog.unit_rows()
    }
    assert rows == {0: ("done", 2, None), 1: ("failed", 1, "boom")}
    assert catalog.unit_states("read") == {0: "done", 1: "failed"}
    assert catalog.unit_results("read") == {0: {"rows": 10, "files": ["a"]}}


def test_unit_results_only_of_done_units(catalog: Catalog) -> None:
    catalog.reset_units({"write": 3})
    catalog.set_unit("write", 0, "done", result=[1, 2])
    catalog.set_unit("write", 1, "done")
    catalog.set_unit("write", 2, "running", result={"partial": True})
    assert catalog.unit_results("write") == {0: [1, 2]}


def test_reset_units_starts_afresh(catalog: Catalog) -> None:
    catalog.reset_units({"read": 2, "write": 1})
    catalog.set_unit("read", 1, "failed", error="x")
    catalog.set_unit("write", 0, "done", result=1)
    catalog.reset_units({"read": 1})
    assert catalog.unit_rows() == [("read", 0, "pending", 0, None, None)]
    assert catalog.unit_results("write") == {}


def test_state_survives_reopening(tmp_path: Path) -> None:
    catalog = Catalog.open(tmp_path, create=True)
    catalog.sync_file_list(entries("/d/A_1.root"))
    counted(catalog, catalog.files()[0].id, {4: 2})
    catalog.reset_units({"read": 1})
    catalog.set_unit("read", 0, "failed", error="x")
    catalog.close()
    again = Catalog.open(tmp_path)
    assert again.counts_matrix(N_REGIONS)[1][0, 4] == 2
    assert again.unit_rows() == [("read", 0, "failed", 1, "x", None)]
    again.close()


def test_a_failed_transaction_changes_nothing(catalog: Catalog) -> None:
    catalog.sync_file_list(entries("/d/A_1.root"))
    with pytest.raises(RuntimeError), catalog.transaction() as db:
        db.execute("DELETE FROM files")
        raise RuntimeError("interrupted")
    assert [r.path for r in catalog.files()] == ["/d/A_1.root"]


def test_units_handed_out_record_when(catalog: Catalog) -> None:
    catalog.reset_units({"read": 2})
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    catalog.mark_running("read", [1])
    rows = catalog.unit_rows()
    assert (rows[0].status, rows[0].started) == ("pending", None)
    assert rows[1].status == "running"
    assert before <= datetime.datetime.fromisoformat(rows[1].started or "")


def test_written_files_are_remembered_until_forgotten(catalog: Catalog) -> None:
    catalog.record_written("output", [("/o/batch0.root", 10), ("/o/provenance.json", None)])
    catalog.record_written("report", [("/r/report.html", 5)])
    catalog.record_written("output", [("/o/batch0.root", 12)])
    assert catalog.written("output") == {"/o/batch0.root": 12, "/o/provenance.json": None}
    catalog.forget_written(["/o/batch0.root"])
    assert catalog.written("output") == {"/o/provenance.json": None}
    assert catalog.written("report") == {"/r/report.html": 5}


SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE units (
    kind TEXT NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, error TEXT, result TEXT,
    PRIMARY KEY (kind, idx)
) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO units VALUES ('write', 0, 'done', 1, NULL,
    '{"outputs": [{"index": 0, "path": "/o/batch0.root", "size": 7}]}');
INSERT INTO units VALUES ('read', 0, 'running', 0, NULL, NULL);
"""


def test_a_catalog_of_schema_1_is_brought_up_to_date(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / CATALOG_NAME) as old:
        old.executescript(SCHEMA_1)
    catalog = Catalog.open(tmp_path)
    assert catalog.get_meta("schema_version") == SCHEMA_VERSION
    assert catalog.written("output") == {"/o/batch0.root": 7}  # its outputs are ours
    assert catalog.unit_rows()[0] == ("read", 0, "running", 0, None, None)
    catalog.close()


def test_a_full_disk_is_a_one_line_catalog_error(tmp_path: Path) -> None:
    catalog = Catalog.open(tmp_path, create=True)
    catalog._db.execute(
        f"PRAGMA max_page_count = {catalog._db.execute('PRAGMA page_count').fetchone()[0]}"
    )
    with pytest.raises(CatalogError, match=r"database or disk is full") as info:
        catalog.record_written("output", [(f"/o/{i:0200d}", i) for i in range(1000)])
    assert str(info.value).startswith(str(tmp_path / CATALOG_NAME) + ": ")
    catalog.close()
