"""Smoke test of the benchmark harness: one repetition on a tiny dataset, every core stage."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from benchmarks import harness  # noqa: E402  (benchmarks/ is not an installed package)

STAGE_KEYS = ("wall_s", "cpu_s", "peak_rss_client_mb", "peak_rss_max_mb")


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_harness_tiny(tmp_path: Path) -> None:
    """count, plan, run and the I/O limit are measured and give positive numbers and ratios."""
    results = harness.main(
        ["--size", "tiny", "--stages", "count,plan,run,io", "--repeat", "1", "--workers", "1",
         "--scaling", "none", "--out", str(tmp_path / "bench")]
    )  # fmt: skip
    written = json.loads((tmp_path / "bench" / "results" / "tiny.json").read_text())
    assert written["stages"].keys() == results["stages"].keys()
    stages = written["stages"]
    measured = ("count", "plan", "run", "io_select", "io_read", "io_write", "cli_startup")
    # run's outputs are also written again by run's own writer: the limit in their format
    assert set(stages) == {*measured, "io_limit", "engine_startup", "io_rewrite", "io_limit_format"}
    for stage in measured:
        for key in STAGE_KEYS:
            assert _positive(stages[stage][key]), (stage, key, stages[stage][key])
    assert _positive(stages["io_limit"]["wall_s"])
    for key in ("entries_per_s", "mb_per_s", "bytes_read_ratio", "output_mb"):
        assert _positive(stages["run"][key]), key
    # every basket of every input file is read, none of them twice
    assert 0.8 < stages["run"]["bytes_read_ratio"] < 1.1
    assert 0.8 < stages["io_read"]["bytes_read_ratio"] < 1.1
    # count reads only the selection branches, a small part of each file
    assert 0 < stages["count"]["bytes_read_ratio"] < 0.5
    # the I/O limit writes exactly the rows `run` wrote
    facts = written["plan_facts"]
    rows = facts["n_batches"] * facts["n_streams"] * facts["per_batch"]
    assert written["repetitions"][0]["io_write"]["detail"]["rows"] == rows
    assert written["repetitions"][0]["io_rewrite"]["detail"]["rows"] == rows
    for key in ("count_vs_io_limit", "plan_vs_io_limit", "run_vs_io_limit", "count_vs_select_read"):
        assert _positive(written["ratios"][key]), key
    assert {t["target"] for t in written["targets"]} >= {"run / I/O limit"}
    assert (tmp_path / "bench" / "results" / "tiny.md").read_text().startswith("# balanced")


def test_harness_tiny_vector_outputs_get_a_limit_in_their_format(tmp_path: Path) -> None:
    """With std::vector inputs the limit is also measured writing run's rows as std::vector
    (io.ttree_writer), the outputs' format: every row, and a ratio of run to that limit."""
    results = harness.main(
        ["--size", "tiny", "--vector-branches", "--stages", "run,io", "--repeat", "1",
         "--workers", "1", "--scaling", "none", "--out", str(tmp_path / "bench")]
    )  # fmt: skip
    repetition = results["repetitions"][0]
    rewrite = repetition["io_rewrite"]["detail"]
    assert rewrite["writer"].startswith("io.ttree_writer")
    assert rewrite["rows"] == repetition["io_write"]["detail"]["rows"] > 0
    assert _positive(repetition["io_rewrite"]["seconds"])
    assert repetition["io_limit_format"]["wall_s"] == (
        repetition["io_read"]["seconds"] + repetition["io_rewrite"]["seconds"]
    )
    assert _positive(results["ratios"]["run_vs_io_limit_format"])
    targets = {t["target"]: t for t in results["targets"]}
    name = "run / I/O limit in the outputs' format, run's writer (io.ttree_writer)"
    assert _positive(targets[name]["measured"])
    # a run of some stages only does not overwrite the results of a full one
    results_directory = tmp_path / "bench" / "results"
    assert sorted(p.name for p in results_directory.glob("*.json")) == ["tiny-vector-io-run.json"]
