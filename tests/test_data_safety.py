"""The tool deletes or replaces only what its catalog recorded writing.

Scratch is a directory the tool makes for its plan (`<scratch>/balanced-batches-<plan id>`);
cleaning up an output directory removes only this tool's temporaries of the planned names and
never follows a symlink; a planned output (or report file) held by a file the tool did not
write is a one-line error until `--overwrite`; outputs of an earlier plan are removed only
while they are the files the tool wrote.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conftest import (
    Production,
    cli,
    project_yaml,
    reference_plan_args,
)
from faults_util import cli_error, leftovers, output_digests

REFERENCE_FILES = ["batch0.root", "batch1.root", "batch2.root"]


def foreign_line(
    directory: Path, names: str, count: int = 1, elsewhere: str = "--output-directory"
) -> str:
    files = "file exists" if count == 1 else "files exist"
    return (
        f"error: {directory}: {count} {files} that balanced-batches did not write but would "
        f"replace ({names}); move them away, choose another {elsewhere}, or pass --overwrite "
        "to replace them"
    )


def test_a_user_scratch_directory_keeps_everything_but_the_plans_own_subdirectory(
    counted_copy: Path, tmp_path: Path, reference: Production
) -> None:
    scratch = tmp_path / "my-scratch"
    thesis = scratch / "thesis" / "chapter1.tex"
    thesis.parent.mkdir(parents=True)
    thesis.write_text("Chapter 1\n")
    config = project_yaml(tmp_path / "project.yaml", f"execution: {{scratch: {scratch}}}")
    cli(*reference_plan_args(counted_copy), "--config", config)
    cli("run", "--workdir", counted_copy, "--workers", 1)

    assert thesis.read_text() == "Chapter 1\n"
    assert sorted(p.name for p in scratch.iterdir()) == ["thesis"]
    assert output_digests(counted_copy / "batches") == output_digests(reference.outdir)


def test_cleaning_the_output_directory_keeps_hidden_look_alikes_and_never_follows_a_symlink(
    counted_copy: Path, tmp_path: Path, reference: Production
) -> None:
    outdir = counted_copy / "batches"
    outdir.mkdir()
    (outdir / ".notes.partial").write_text("notes")
    (outdir / ".backup.parts").mkdir()
    (outdir / ".backup.parts" / "old.root").write_text("backup")
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("precious")
    (outdir / ".x.part").symlink_to(other)
    # a temporary of a planned name that points elsewhere is not followed either
    (outdir / ".batch0.root.part1").symlink_to(other)
    before = {p.name for p in outdir.iterdir()}

    cli(*reference_plan_args(counted_copy))
    for _ in range(2):  # every rerun, too
        cli("run", "--workdir", counted_copy, "--workers", 1)
        assert {p.name for p in outdir.iterdir()} == before | {
            *REFERENCE_FILES,
            "provenance.json",
            "statistics.json",
        }
        assert (outdir / ".notes.partial").read_text() == "notes"
        assert (outdir / ".backup.parts" / "old.root").read_text() == "backup"
        assert (other / "precious.txt").read_text() == "precious"
        assert output_digests(outdir) == output_digests(reference.outdir)


def test_a_planned_output_held_by_a_foreign_file_is_refused_until_overwrite(
    counted_copy: Path, reference: Production
) -> None:
    outdir = counted_copy / "batches"
    outdir.mkdir()
    (outdir / "batch1.root").write_bytes(b"someone else's file")
    (outdir / "batch7.root").write_bytes(b"another plan's file")

    assert cli_error(*reference_plan_args(counted_copy)) == foreign_line(outdir, "batch1.root")
    assert (outdir / "batch1.root").read_bytes() == b"someone else's file"

    # the file may also appear between plan and run: run refuses as well
    (outdir / "batch1.root").rename(counted_copy / "aside.root")
    cli(*reference_plan_args(counted_copy))
    (counted_copy / "aside.root").rename(outdir / "batch1.root")
    assert cli_error("run", "--workdir", counted_copy, "--workers", 1) == foreign_line(
        outdir, "batch1.root"
    )
    assert (outdir / "batch1.root").read_bytes() == b"someone else's file"
    assert not (outdir / "batch0.root").exists()

    cli("run", "--workdir", counted_copy, "--workers", 1, "--overwrite")
    assert output_digests(outdir) == {
        **output_digests(reference.outdir),
        "batch7.root": output_digests(outdir)["batch7.root"],
    }
    # a file that no plan of ours names is never touched
    assert (outdir / "batch7.root").read_bytes() == b"another plan's file"
    assert leftovers(outdir) == []


def test_outputs_of_an_earlier_plan_are_removed_only_while_unchanged(counted_copy: Path) -> None:
    outdir = counted_copy / "batches"
    cli(*reference_plan_args(counted_copy, batches=5))
    cli("run", "--workdir", counted_copy, "--workers", 1)
    assert sorted(output_digests(outdir)) == [f"batch{i}.root" for i in range(5)]
    # batch4.root is ours; batch3.root was replaced by the user after the run
    (outdir / "batch3.root").write_bytes(b"the user's own batch3")

    cli(*reference_plan_args(counted_copy, batches=3))
    cli("run", "--workdir", counted_copy, "--workers", 1)
    assert sorted(output_digests(outdir)) == [*REFERENCE_FILES, "batch3.root"]
    assert (outdir / "batch3.root").read_bytes() == b"the user's own batch3"


def test_report_refuses_foreign_files_and_removes_only_its_own_stale_figures(
    reference: Production, tmp_path: Path
) -> None:
    workdir = Path(shutil.copytree(reference.workdir, tmp_path / "work"))
    out = tmp_path / "report"
    out.mkdir()
    mine = ["counts_mine.png", "reuse_mine.png", "batches_mine.png", "output_mine.png"]
    for name in mine:
        (out / name).write_bytes(b"my figure")
    cli("report", "--workdir", workdir, "--output", out)
    first = {p.name for p in out.iterdir()} - set(mine)
    assert "report.html" in first
    assert {"output_pt.png", "output_types.png"} <= first
    assert all((out / name).read_bytes() == b"my figure" for name in mine)

    # a new plan not run yet: the output figures of the old one are stale; those still as
    # written go, one the user changed since stays
    (out / "output_pt.png").write_bytes(b"my version")
    cli(*reference_plan_args(workdir, seed=8))
    cli("report", "--workdir", workdir, "--output", out)
    second = {p.name for p in out.iterdir()} - set(mine)
    assert {name for name in second if name.startswith("output_")} == {"output_pt.png"}
    assert (out / "output_pt.png").read_bytes() == b"my version"
    assert second < first
    assert all((out / name).read_bytes() == b"my figure" for name in mine)

    # a report directory holding the user's own report.html
    other = tmp_path / "other"
    other.mkdir()
    (other / "report.html").write_text("<p>my page</p>")
    message = cli_error("report", "--workdir", workdir, "--output", other)
    assert message == foreign_line(other, "report.html", elsewhere="--output")
    assert sorted(p.name for p in other.iterdir()) == ["report.html"]
    assert (other / "report.html").read_text() == "<p>my page</p>"
    cli("report", "--workdir", workdir, "--output", other, "--overwrite")
    assert "my page" not in (other / "report.html").read_text()


def test_the_plans_size_estimate_is_near_what_run_writes(counted_copy: Path) -> None:
    """plan prints it; run compares it with the free space (refusal: test_faults_resources).
    Intermediate parts hold each used candidate once, whatever the reuse."""
    plan = cli(*reference_plan_args(counted_copy)).stdout
    estimate = re.search(
        r"the plan will write 3 files, about ([\d.]+) (k?B|MB|GB) of outputs and "
        r"([\d.]+) (k?B|MB|GB) of scratch space",
        plan,
    )
    assert estimate, plan
    cli("run", "--workdir", counted_copy, "--workers", 1, "--keep-scratch")
    written = sum(p.stat().st_size for p in (counted_copy / "batches").glob("batch*.root"))
    parts = sum(p.stat().st_size for p in (counted_copy / "scratch").rglob("*.rows"))
    scale = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
    assert written / 2 < float(estimate[1]) * scale[estimate[2]] < written * 2
    assert parts / 2 < float(estimate[3]) * scale[estimate[4]] < parts * 2


@pytest.mark.parametrize(
    "hostile", ["../escape", ".hidden{index}", "a{index}{x}", "nul\x00{index}"]
)
def test_hostile_output_names_are_refused_when_planning(
    counted_copy: Path, hostile: str, tmp_path: Path
) -> None:
    name = hostile.replace("\x00", "\\0")
    config = project_yaml(tmp_path / "project.yaml", f'output: {{name: "{name}"}}')
    message = cli_error(*reference_plan_args(counted_copy), "--config", config)
    assert "output.name" in message or "name" in message, message
