"""Faults: outputs damaged after writing (overwritten in the middle, truncated, deleted).

Every test asserts that `check` fails naming the damaged file, one line per problem, and that
`run` again remakes that file alone, byte for byte the session's `reference`, leaving the other
outputs untouched, after which `check` passes. The finished production (`made`) is made once for
the module; each test damages one of its outputs and restores it afterwards.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import Production, cli, reference_plan_args
from faults_util import finished_line, output_digests, run_args

# -- verification of results --------------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, counted: Path) -> Production:
    """A private finished production of the reference plan (tests damage and restore it)."""
    workdir = Path(shutil.copytree(counted, tmp_path_factory.mktemp("made") / "work"))
    cli(*reference_plan_args(workdir))
    cli(*run_args(workdir))
    return Production(workdir)


def overwrite_middle(path: Path) -> None:
    """Flips 16 bytes in the middle of the file (same size)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    """Keeps the first half of the file."""
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


DAMAGES: dict[str, Callable[[Path], None]] = {
    "overwritten-in-the-middle": overwrite_middle,
    "truncated": truncate,
    "deleted": Path.unlink,
}


@pytest.fixture
def damaged(made: Production, request: pytest.FixtureRequest) -> Iterator[Path]:
    """batch1.root of `made`, damaged as the test's `damage` parameter says, restored after."""
    path = made.outdir / "batch1.root"
    original = path.read_bytes()
    DAMAGES[request.param](path)
    try:
        yield path
    finally:
        path.write_bytes(original)


@pytest.mark.parametrize("damaged", DAMAGES, indirect=True)
def test_check_flags_an_output_changed_after_writing(made: Production, damaged: Path) -> None:
    result = cli("check", "--workdir", made.workdir, "--sample", 0, expect=1)
    # progress goes to the log (level-prefixed lines); problems are the indented lines
    lines = [line for line in result.stderr.splitlines() if not line.startswith("INFO ")]
    problems = lines[:-1]
    assert problems, result.stderr
    for problem in problems:
        assert problem.startswith(f"  {damaged}: "), f"not one line naming the file: {problem!r}"
    assert lines[-1] == f"check failed: {len(problems)} problems"
    if damaged.exists():
        assert f"  {damaged}: changed after it was written (size or adler32)" in problems
    else:
        assert problems == [f"  {damaged}: missing"]


@pytest.mark.parametrize("damaged", DAMAGES, indirect=True)
def test_run_again_remakes_a_lost_or_damaged_output_and_check_passes(
    made: Production, damaged: Path, reference_digests: dict[str, str]
) -> None:
    others = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in made.outputs() if p != damaged}
    result = cli(*run_args(made.workdir))
    assert result.stdout.splitlines()[-1] == finished_line(made.outdir)
    assert output_digests(made.outdir) == reference_digests, "the damaged output was not remade"
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in others} == others
    assert (
        "all outputs match the plan"
        in cli("check", "--workdir", made.workdir, "--sample", 0).stdout
    )
