"""Markdown tables and target checks from a results dictionary (see harness.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

GB_MB = 1024.0
STAGE_LABELS = {
    "count": "count",
    "plan": "plan",
    "run": "run",
    "io_select": "I/O: read 4 selection branches",
    "io_read": "I/O: read all branches (run's files)",
    "io_write": "I/O: write run's rows once",
    "io_limit": "I/O limit = read all + write",
    "io_rewrite": "I/O: write run's rows once in their own format (io.ttree_writer)",
    "io_limit_format": "I/O limit, outputs' format = read all + write in it",
    "cli_startup": "baseline: start Python, import the library",
    "engine_startup": "baseline: local engine start + stop",
}


def _number(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_number(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _worst(results: dict[str, Any], stage: str, key: str) -> float | None:
    values = [rep[stage][key] for rep in results.get("repetitions", []) if stage in rep]
    return max(values) if values else None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, measured value against limit."""
    ratios = results.get("ratios", {})
    stages = results.get("stages", {})
    plan = results.get("scaling", {}).get("plan")
    checks: list[tuple[str, float | None, float, str]] = [
        ("run / I/O limit", ratios.get("run_vs_io_limit"), 1.5, "x"),
        ("count / selection-branch read", ratios.get("count_vs_select_read"), 1.2, "x"),
        ("bytes read by run / input size", stages.get("run", {}).get("bytes_read_ratio"), 1.1, "x"),
        (
            "peak RSS of one process (count, run; worst repetition)",
            max(
                (
                    v
                    for v in (
                        _worst(results, "count", "peak_rss_max_mb"),
                        _worst(results, "run", "peak_rss_max_mb"),
                    )
                    if v is not None
                ),
                default=None,
            ),
            2 * GB_MB,
            "MB",
        ),
        ("plan 10^5 batches x 300 files x 3,000 regions", plan and plan["plan_s"], 10.0, "s"),
        ("catalog of that plan", plan and plan["catalog_mb"], 200.0, "MB"),
    ]
    if "run_vs_io_limit_format" in ratios:  # ROOT outputs, rewritten by the harness
        name = "run / I/O limit in the outputs' format, run's writer (io.ttree_writer)"
        checks.insert(1, (name, ratios["run_vs_io_limit_format"], 1.5, "x"))
    return [
        {
            "target": name,
            "measured": value,
            "limit": limit,
            "unit": unit,
            "met": None if value is None else value <= limit,
        }
        for name, value, limit, unit in checks
    ]


def _stage_rows(results: dict[str, Any]) -> list[list[Any]]:
    stages = results["stages"]
    ratios = results.get("ratios", {})
    limit = stages.get("io_limit", {}).get("wall_s")
    rows = []
    for key, label in STAGE_LABELS.items():
        record = stages.get(key)
        if record is None:
            continue
        wall = (
            record.get("seconds", record["wall_s"]) if key.startswith("io_") else record["wall_s"]
        )
        ratio = ratios.get(f"{key}_vs_io_limit")
        if ratio is None and limit and key != "io_limit":
            ratio = wall / limit
        rows.append(
            [
                label,
                wall,
                record.get("cpu_s"),
                record.get("entries_per_s"),
                record.get("mb_per_s"),
                ratio,
                record.get("bytes_read_ratio"),
                record.get("peak_rss_client_mb"),
                record.get("peak_rss_children_mb"),
                record.get("scratch_peak_mb"),
            ]
        )
    return rows


def _curve(points: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    return table([label for label, _ in columns], [[p.get(k) for _, k in columns] for p in points])


CURVE_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "files": [
        ("files", "files"), ("input MB", "input_mb"), ("streams", "streams"),
        ("batches", "batches"), ("output rows", "output_rows"), ("count s", "count_s"),
        ("plan s", "plan_s"), ("run s", "run_s"), ("run µs/row", "run_us_per_output_row"),
        ("scratch MB", "scratch_peak_mb"), ("peak RSS MB", "run_peak_rss_mb"),
    ],
    "regions": [
        ("regions", "regions"), ("streams", "streams"), ("batches", "batches"),
        ("output rows", "output_rows"), ("count s", "count_s"), ("plan s", "plan_s"),
        ("catalog MB", "catalog_mb"), ("run s", "run_s"), ("run µs/row", "run_us_per_output_row"),
        ("peak RSS MB", "run_peak_rss_mb"),
    ],
    "batches": [
        ("batches", "batches"), ("streams", "streams"), ("output files", "output_files"),
        ("output rows", "output_rows"), ("plan s", "plan_s"), ("catalog MB", "catalog_mb"),
        ("run s", "run_s"), ("run µs/row", "run_us_per_output_row"),
        ("peak RSS MB", "run_peak_rss_mb"),
    ],
    "workers": [
        ("workers", "workers"), ("count s", "count_s"), ("plan s", "plan_s"), ("run s", "run_s"),
        ("run CPU s", "run_cpu_s"), ("peak RSS MB", "run_peak_rss_mb"),
    ],
}  # fmt: skip


def _original(results: dict[str, Any]) -> list[str]:
    original = results["original"]
    stages = results.get("stages", {})
    facts = results.get("plan_facts", {})
    lines = ["## Original per-region workflow (ROOT RDataFrame)", ""]
    per_batch = original["per_batch_on_cores_s"]
    rows: list[list[Any]] = [
        ["regions per batch (measured / in batch)",
         f"{original['regions_measured']} / {original['regions_per_batch']}"],
        ["one job, extrapolated to the whole batch (s)", original["per_job_s"]],
        [f"per batch on {original['parallel']} cores (s)", per_batch],
        ["input bytes read per batch (extrapolated, MB)", original["bytes_read_per_batch"] / 2**20],
        ["peak RSS of one job (MB)", original["peak_rss_max_mb"]],
    ]  # fmt: skip
    if "run" in stages and facts.get("n_batches"):
        n_batches = facts["n_batches"]
        bb_per_batch = stages["run"]["wall_s"] / n_batches
        bb_total = sum(stages[s]["wall_s"] for s in ("count", "plan", "run") if s in stages)
        original_total = per_batch * n_batches
        rows += [
            ["balanced-batches run per batch (s)", bb_per_batch],
            ["speed-up per batch", per_batch / bb_per_batch],
            [f"original make stage, all {n_batches} batches (s, extrapolated)", original_total],
            ["balanced-batches count + plan + run (s)", bb_total],
            ["speed-up, whole pipeline (original: make stage only)", original_total / bb_total],
        ]
        original["speedup_per_batch"] = per_batch / bb_per_batch
        original["speedup_pipeline"] = original_total / bb_total
    lines += [table(["", "value"], rows), ""]
    return lines


def _profile(results: dict[str, Any]) -> list[str]:
    profile = results["profile"]
    lines = [
        f"## Profile of `run --workers 1` ({profile.get('profiler', 'cProfile')}, "
        f"{profile['profiled_s']:.1f} s profiled)",
        "",
        table(["function", "cumulative s", "share"],
              [[s["label"], s["seconds"], f"{100 * s['share']:.0f} %"]
               for s in profile["hot_spots"]]),
        "",
        "Top functions by own time:",
        "",
        table(["function", "own s", "share"],
              [[t["function"], t["own_s"], f"{100 * t['share']:.0f} %"]
               for t in profile["top_own_time"][:12]]),
        "",
    ]  # fmt: skip
    return lines


def markdown(results: dict[str, Any]) -> str:
    """Every table of a results dictionary."""
    machine = results["machine"]
    dataset = results["dataset"]
    lines = [
        f"# balanced-batches benchmark: {results['args']['size']}",
        "",
        f"Machine: {machine['nproc']} cores, {machine['memory_gb']:.1f} GB, {machine['cpu']}; "
        f"load average at start {', '.join(f'{x:.1f}' for x in machine['load_average'])}.",
        f"Dataset `{dataset['key']}`: {dataset['files']} files, {dataset['entries']:,} entries, "
        f"{dataset['mb']:.0f} MB.",
    ]
    if "plan_settings" in results:
        settings, facts = results["plan_settings"], results["plan_facts"]
        rows = facts["n_batches"] * facts["n_streams"] * facts["per_batch"]
        lines.append(
            f"Plan: --pileup {settings['pileup']} --events-per-batch-type {settings['per_batch']}"
            f" --batches {settings['batches']}: {facts['n_streams']} streams, "
            f"{facts['n_output_files']} output files, {rows:,} rows written; "
            f"run reads {facts['read_files']} files = {facts['read_entries']:,} entries, "
            f"{facts['read_bytes'] / 2**20:.0f} MB."
        )
    lines.append("")
    if "stages" in results:
        repeats = results["stages"][next(iter(results["stages"]))]["repeats"]
        lines += [
            f"## Stages (median of {repeats} repetitions, workers = {results['args']['workers']})",
            "",
            table(
                [
                    "stage",
                    "wall s",
                    "CPU s",
                    "entries/s",
                    "input MB/s",
                    "x I/O limit",
                    "bytes read / size",
                    "peak RSS client MB",
                    "peak RSS worker MB",
                    "scratch peak MB",
                ],
                _stage_rows(results),
            ),
            "",
        ]
        ratios = results.get("ratios", {})
        if ratios:
            lines += [
                "Ratios (median of the per-repetition ratios): "
                + ", ".join(
                    f"{key} = {value:.2f}"
                    for key, value in ratios.items()
                    if isinstance(value, float)
                ),
                "",
            ]
    if "original" in results:
        lines += _original(results)
    if "profile" in results:
        lines += _profile(results)
    for name, points in results.get("scaling", {}).items():
        if name == "plan":
            lines += [
                "## Planning 10^5 batches x 300 files x 3,000 regions (synthetic catalog)",
                "",
                table(["", "value"], [[k, v] for k, v in points.items()]),
                "",
            ]
            continue
        lines += [f"## Scaling: {name}", "", _curve(points, CURVE_COLUMNS[name]), ""]
    lines += [
        "## Targets",
        "",
        table(
            ["target", "measured", "limit", "met"],
            [
                [
                    t["target"],
                    f"{_number(t['measured'])} {t['unit']}",
                    f"{t['limit']:g} {t['unit']}",
                    t["met"],
                ]
                for t in results["targets"]
            ],
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """`python -m benchmarks.report RESULTS.json`: the Markdown of a results file, again."""
    import json
    import sys
    from pathlib import Path

    from .profiling import analyse

    results = json.loads(Path(sys.argv[1]).read_text())
    profile = results.get("profile")
    if profile and Path(profile["profile"]).exists():
        profile.update(analyse(Path(profile["profile"])))
    results["targets"] = targets(results)
    print(markdown(results))


if __name__ == "__main__":
    main()
