"""The report: plots and one self-contained HTML page of the input, the plan and the output.

Expectations come from the counts recomputed from the input files (conftest), from the
output files read with uproot and from the catalog's SQLite tables read with sqlite3.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import struct
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from balanced_batches.catalog import Catalog
from balanced_batches.config import ProjectConfig
from balanced_batches.errors import CatalogError, InputFileError
from balanced_batches.plots import compact, display_edges, overflow_label
from balanced_batches.regions import build_selection
from balanced_batches.stages import report_outputs
from balanced_batches.stages.plan import choose_batch_count, load_plan
from balanced_batches.stages.report import (
    REUSE_LIMITS,
    batch_counts_by_rule,
    figure_name,
    planned_input,
    scan_outputs,
    write_report,
)
from conftest import (
    N_BATCHES,
    PER_BATCH,
    PILEUP,
    Dataset,
    Production,
    active_types,
    cli,
    planned_streams,
    totals_by_key,
)

CHROMIUM = Path("/usr/bin/chromium")
TYPES = ("electron", "muon", "jet", "genuine")
OUTPUT_FIGURES = {
    "output_pt.png",
    "output_abseta.png",
    "output_types.png",
    "output_process-keys.png",
    "output_per-batch.png",
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- reading back what the report wrote ---------------------------------------------------------


class _Page(HTMLParser):
    """The images, the totals table and the external references of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.totals: dict[str, str] = {}
        self.external: list[str] = []
        self.config = ""
        self._row: str | None = None
        self._in_config = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "img":
            self.images.append(values)
        if tag == "tr" and "data-key" in values:
            self._row = values["data-key"]
        if tag == "td" and self._row is not None and "data-value" in values:
            self.totals[self._row] = values["data-value"]
            self._row = None
        for name in ("src", "href"):
            value = values.get(name, "")
            if value and not value.startswith(("data:", "#")):
                self.external.append(f"<{tag} {name}={value[:60]}>")
        if tag in ("link", "script", "iframe"):
            self.external.append(f"<{tag}>")
        self._in_config = tag == "pre" and values.get("id") == "config"

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._in_config = False

    def handle_data(self, data: str) -> None:
        if self._in_config:
            self.config += data


def parse_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == PNG_MAGIC, "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def colours(path: Path) -> np.ndarray:
    """RGB values (0-1) of every pixel of an image, decoded by matplotlib (it bundles Pillow)."""
    from matplotlib.image import imread

    return np.asarray(imread(path))[..., :3].reshape(-1, 3)


def catalog_sql(workdir: Path, query: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(workdir / "balanced-batches.sqlite")
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def stored_config(workdir: Path) -> ProjectConfig:
    catalog = Catalog.open(workdir)
    try:
        data = catalog.get_meta("plan_config") or catalog.get_meta("config")
    finally:
        catalog.close()
    return ProjectConfig.model_validate(data)


def counts_of(workdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workdir / "counts.json").read_text())
    return data


def expected_count_maps(counts: dict[str, Any], pileup: str) -> set[str]:
    """counts_<key>_<type>.png of every key with candidates: types with candidates or active."""
    names = set()
    for key, regions in totals_by_key(counts, pileup).items():
        if not any(regions.values()):
            continue
        process = key.rsplit("_", 1)[0]
        for type_name in TYPES:
            in_type = sum(n for r, n in regions.items() if r.startswith(type_name + "_"))
            if in_type or type_name in active_types(process):
                names.add(figure_name("counts", key, type_name))
    return names


# -- the full report of the reference production ------------------------------------------------


@pytest.fixture(scope="module")
def full_report(reference: Production, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`check --report` on a copy of the reference production (count, plan, run done)."""
    workdir = Path(shutil.copytree(reference.workdir, tmp_path_factory.mktemp("report") / "work"))
    result = cli("check", "--workdir", workdir, "--sample", 10, "--report")
    html = workdir / "report" / "report.html"
    assert "all outputs match the plan" in result.stdout
    assert result.stdout.strip().endswith(f"report: {html}")
    return html


def test_report_writes_every_expected_figure(reference: Production, full_report: Path) -> None:
    counts = counts_of(reference.workdir)
    streams = planned_streams(totals_by_key(counts, PILEUP), PILEUP)
    reuse_maps = {
        figure_name("reuse", key, region.split("_absetabin")[0]) for key, region in streams
    }
    expected = expected_count_maps(counts, PILEUP) | reuse_maps | OUTPUT_FIGURES
    expected.add(figure_name("batches", "by-rule"))
    written = {path.name for path in full_report.parent.glob("*.png")}
    assert written == expected
    for name in written:
        data = (full_report.parent / name).read_bytes()
        width, height = png_size(data)
        assert width >= 300 and height >= 200, name
        assert len(data) > 5000, name


def test_html_embeds_every_figure_and_nothing_external(full_report: Path) -> None:
    page = parse_page(full_report)
    embedded = Counter(image["data-file"] for image in page.images)
    assert set(embedded) == {path.name for path in full_report.parent.glob("*.png")}
    assert set(embedded.values()) == {1}
    for image in page.images:
        prefix = "data:image/png;base64,"
        assert image["src"].startswith(prefix)
        data = base64.b64decode(image["src"][len(prefix) :], validate=True)
        assert data == (full_report.parent / image["data-file"]).read_bytes()
        assert image["alt"]
    assert page.external == []


def test_totals_equal_the_catalog_and_the_outputs(
    dataset: Dataset, reference: Production, full_report: Path
) -> None:
    totals = parse_page(full_report).totals
    workdir = reference.workdir
    (files,) = catalog_sql(workdir, "SELECT count(*) FROM files")[0]
    (counted,) = catalog_sql(workdir, "SELECT count(*) FROM files WHERE status='counted'")[0]
    (entries,) = catalog_sql(workdir, "SELECT sum(entries) FROM files WHERE status='counted'")[0]
    counts = counts_of(workdir)
    candidates = sum(n for entry in counts.values() for k, n in entry.items() if "_absetabin" in k)
    streams = planned_streams(totals_by_key(counts, PILEUP), PILEUP)
    outputs = reference.outputs()
    output_entries = 0
    for path in outputs:
        with uproot.open(path) as handle:
            output_entries += handle["taus"].num_entries
    assert int(totals["files_listed"]) == files == len(dataset.paths)
    assert int(totals["files_counted"]) == counted
    assert int(totals["files_skipped"]) == 0
    assert int(totals["entries"]) == entries
    assert int(totals["candidates"]) == candidates
    assert int(totals["active_regions"]) == len(streams)
    assert int(totals["streams"]) == len(streams)
    assert int(totals["process_keys"]) == len({key for key, _ in streams})
    assert int(totals["batches"]) == N_BATCHES
    assert int(totals["per_batch"]) == PER_BATCH
    assert int(totals["output_files"]) == len(outputs)
    assert int(totals["output_entries"]) == output_entries == N_BATCHES * PER_BATCH * len(streams)
    assert int(totals["output_size"]) == sum(path.stat().st_size for path in outputs)


def test_html_states_balance_and_shows_the_configuration(
    reference: Production, full_report: Path
) -> None:
    text = full_report.read_text(encoding="utf-8")
    assert f"every stream has exactly N = {PER_BATCH}" in text
    assert "No file was skipped." in text
    shown = yaml.safe_load(parse_page(full_report).config)
    assert ProjectConfig.model_validate(shown) == stored_config(reference.workdir)
    assert shown["plan"]["pileup"] == PILEUP
    assert shown["plan"]["events_per_batch_type"] == PER_BATCH


def test_output_scan_finds_n_per_stream_in_every_batch(reference: Production) -> None:
    catalog = Catalog.open(reference.workdir)
    try:
        plan = load_plan(catalog)
        config = stored_config(reference.workdir)
        outputs = [o for r in catalog.unit_results("write").values() for o in r["outputs"]]
        scan = scan_outputs(outputs, plan, config, build_selection(config))
    finally:
        catalog.close()
    assert scan.problems == []
    assert scan.batches.batches == N_BATCHES
    assert np.all(scan.batches.minimum == PER_BATCH)
    assert np.all(scan.batches.maximum == PER_BATCH)
    # filled from the pT and |eta| values of the rows: the same cells as the regions' streams
    filled = scan.histogram.values().reshape(len(plan.process_keys), -1)
    expected = np.zeros_like(filled)
    expected[plan.stream_key_index, plan.stream_region] = N_BATCHES * PER_BATCH
    assert np.array_equal(filled, expected)


def test_input_distributions_equal_the_candidates_in_the_files(
    reference: Production, expected_counts: dict[str, Any]
) -> None:
    """The input side of the comparison: the planned streams' candidates, read from the files."""
    catalog = Catalog.open(reference.workdir)
    try:
        plan = load_plan(catalog)
    finally:
        catalog.close()
    config = stored_config(reference.workdir)
    space = build_selection(config).space
    grid = planned_input(plan, space).reshape(len(plan.process_keys), -1)
    from_files = planned_streams(totals_by_key(expected_counts, PILEUP), PILEUP)
    keys, regions = np.nonzero(grid)
    found = {
        (plan.process_keys[k], space.names[r]): int(grid[k, r])
        for k, r in zip(keys, regions, strict=True)
    }
    assert found == from_files


def test_output_scan_reports_unreadable_files_and_reads_the_rest(
    reference: Production, tmp_path: Path
) -> None:
    catalog = Catalog.open(reference.workdir)
    try:
        plan = load_plan(catalog)
        outputs = [o for r in catalog.unit_results("write").values() for o in r["outputs"]]
    finally:
        catalog.close()
    config = stored_config(reference.workdir)
    damaged = tmp_path / "batch0.root"
    damaged.write_bytes(Path(outputs[0]["path"]).read_bytes()[:5000])
    outputs = [{**outputs[0], "path": str(damaged)}, *outputs[1:]]
    scan = scan_outputs(outputs, plan, config, build_selection(config))
    assert len(scan.problems) == 1 and str(damaged) in scan.problems[0]
    assert scan.files == len(outputs) - 1
    assert scan.batches.batches == N_BATCHES - plan.batches_per_file


@pytest.mark.parametrize("file_format", ["root", "rntuple", "parquet"])
def test_output_chunks_read_every_row_in_bounded_chunks(
    file_format: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_outputs, "CHUNK_ENTRIES", 7)
    columns = {"bb_batch": np.arange(30) // 10, "tau_pt": np.linspace(20, 80, 30)}
    path = tmp_path / ("out.parquet" if file_format == "parquet" else "out.root")
    if file_format == "parquet":
        ak.to_parquet(ak.zip(columns), path)
    else:
        with uproot.recreate(path) as handle:
            if file_format == "root":
                handle.mktree("taus", {name: values.dtype for name, values in columns.items()})
                handle["taus"].extend(columns)
            else:
                handle["taus"] = columns
    chunks = list(report_outputs.output_chunks(path, file_format, "taus", ["tau_pt", "bb_batch"]))
    assert [len(chunk["tau_pt"]) for chunk in chunks] == [7, 7, 7, 7, 2]
    for name, values in columns.items():
        assert np.array_equal(np.concatenate([chunk[name] for chunk in chunks]), values)
    with pytest.raises(InputFileError, match="cannot read"):
        list(report_outputs.output_chunks(tmp_path / "missing", file_format, "taus", ["tau_pt"]))


# -- without a plan, without counts ----------------------------------------------------------


def test_report_without_a_plan_shows_the_input_and_says_what_to_run(
    counted_copy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = cli("report", "--workdir", counted_copy, "--output", out)
    assert result.stdout.strip() == str(out / "report.html")
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "run &#x27;balanced-batches plan&#x27;" in text
    assert "Pass --events-per-batch-type" in text
    written = {p.name for p in out.glob("*.png")}
    assert written == expected_count_maps(counts_of(counted_copy), "all")
    totals = parse_page(out / "report.html").totals
    assert "batches" not in totals and "output_entries" not in totals
    (files,) = catalog_sql(counted_copy, "SELECT count(*) FROM files")[0]
    assert int(totals["files_listed"]) == files
    assert not (counted_copy / "report").exists()


def test_summary_plots_writes_the_input_part(counted_copy: Path) -> None:
    result = cli(
        "summary", "--workdir", counted_copy, "--pileup", PILEUP, "--events-per-batch-type",
        PER_BATCH, "--plots",
    )  # fmt: skip
    html = counted_copy / "report" / "report.html"
    assert f"report: {html}" in result.stdout
    written = {p.name for p in html.parent.glob("*.png")}
    expected = expected_count_maps(counts_of(counted_copy), PILEUP)
    assert written == expected | {figure_name("batches", "by-rule")}
    assert "summary --plots" in html.read_text(encoding="utf-8")
    assert {image["data-file"] for image in parse_page(html).images} == written


def test_missing_counts_are_a_catalog_error(tmp_path: Path) -> None:
    catalog = Catalog.open(tmp_path / "work", create=True)
    try:
        with pytest.raises(CatalogError, match="run 'balanced-batches count' first"):
            write_report(catalog, ProjectConfig(), tmp_path / "report")
    finally:
        catalog.close()
    result = cli("report", "--workdir", tmp_path / "work", expect=2)
    assert result.stderr.startswith("error:") and "count" in result.stderr


# -- pure parts ------------------------------------------------------------------------------


def test_overflow_bins_are_drawn_with_the_previous_width() -> None:
    assert display_edges([20.0, 25.0, 30.0, 100.0]).tolist() == [20, 25, 30, 100, 170]
    assert display_edges([0.0, 0.6, 1.2]).tolist() == pytest.approx([0, 0.6, 1.2, 1.8])
    assert overflow_label([20.0, 100.0]) == "100+"


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (987, "987"), (999.6, "1k"), (12_345, "12.3k"), (999_999, "1M"), (4.5e9, "4.5G")],
)
def test_cell_counts_are_compact(value: float, text: str) -> None:
    assert compact(value) == text


def test_batch_counts_by_rule_follow_choose_batch_count() -> None:
    totals = np.array([3, 40, 400, 1000])
    rules = dict(batch_counts_by_rule(totals, 10))
    assert rules["original"] == choose_batch_count(totals, 10, None, None) == 100
    assert rules["R = 1"] == 0  # 3 candidates cannot fill one batch of 10 without reuse
    for limit in REUSE_LIMITS[1:]:
        assert rules[f"R = {limit}"] == min(100, limit * 3 // 10)
    counts = [rules[f"R = {limit}"] for limit in REUSE_LIMITS]
    assert counts == sorted(counts)


def test_figure_names_are_file_name_safe() -> None:
    assert figure_name("counts", "ZprimeToEE_M-6000_PU200", "jet") == (
        "counts_ZprimeToEE-M-6000-PU200_jet.png"
    )
    assert figure_name("output", "a/b c") == "output_a-b-c.png"


# -- the page in a browser -------------------------------------------------------------------


def test_page_renders_in_headless_chromium(full_report: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)")
    flags = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
    ]  # fmt: skip
    url = full_report.resolve().as_uri()
    screenshot = tmp_path / "page.png"
    dom = subprocess.run(
        [*flags, "--dump-dom", f"--screenshot={screenshot}", "--window-size=1400,3000", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "<h1>balanced-batches report</h1>" in dom
    assert dom.count("<img ") == len(parse_page(full_report).images)
    assert 'id="totals"' in dom
    data = screenshot.read_bytes()
    assert png_size(data) == (1400, 3000)
    assert len(data) > 50_000
    pixels = colours(screenshot)
    assert len(np.unique(pixels, axis=0)) > 100  # not a blank page
    # the heat maps were decoded and drawn: a good part of the page is strongly coloured
    saturated = pixels.max(axis=1) - pixels.min(axis=1) > 0.3
    assert saturated.mean() > 0.05
