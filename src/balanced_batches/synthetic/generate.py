"""Synthetic TauTuple-like n-tuples (CMS TauMLTools ``taus`` tree) for demos, tests and benchmarks.

:func:`generate_dataset` writes, for every selected sample of :data:`~.samples.SAMPLES`::

    <output_dir>/prod_Phase2_v2/crab_output/<dataset>/<request_dir>/<timestamp>/0000/eventTuple_<k>.root

and ``<output_dir>/flist.txt`` (absolute paths, one per line). Every file holds a TTree ``taus``
with one entry per tau candidate. This module holds the options, the choice of samples, the plan
of files, the process pool and the writing; what a file holds is in :mod:`.tautuple_schema` (the
branch schema) and :mod:`.tautuple_model` (physics models and the draws), re-exported here.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engines import Reporter, SilentReporter
from .samples import CAMPAIGN, PHYSICS_KINDS, SAMPLES, Sample
from .tautuple_model import CHUNK_ENTRIES as CHUNK_ENTRIES
from .tautuple_model import PHYSICS_MODELS as PHYSICS_MODELS
from .tautuple_model import GenerateOptionsError as GenerateOptionsError
from .tautuple_model import generate_chunks as generate_chunks
from .tautuple_schema import BRANCH_TYPES as BRANCH_TYPES
from .tautuple_schema import JAGGED_GROUPS as JAGGED_GROUPS
from .tautuple_schema import SCALAR_BRANCHES as SCALAR_BRANCHES

__all__ = [
    "BRANCH_TYPES",
    "CHUNK_ENTRIES",
    "COMPRESSION_CHOICES",
    "GenerateOptions",
    "GenerateOptionsError",
    "compression_codec",
    "file_path",
    "generate_chunks",
    "generate_dataset",
    "generate_file",
    "select_samples",
]

log = logging.getLogger(__name__)

COMPRESSION_LEVELS: dict[str, int] = {"zlib": 4, "lzma": 6, "lz4": 4, "zstd": 5}
COMPRESSION_CHOICES: tuple[str, ...] = (*COMPRESSION_LEVELS, "none")

# Order in which physics kinds are visited when spreading a small selection of samples.
_SPREAD_ORDER = ("DY", "TT", "QCD", "ElecGun", "MuonGun", "HTauTau", "ZprimeTauTau", "WJets")
_PILEUP_PREFERENCE = ("PU200", "PU140", "NoPU")


@dataclass(frozen=True)
class GenerateOptions:
    """What :func:`generate_dataset` writes; validated on construction."""

    output_dir: Path
    files_per_sample: int = 1
    entries_per_file: int = 1000
    seed: int = 1
    compression: str = "zstd"  # "zlib" | "lzma" | "lz4" | "zstd" | "none"
    max_samples: int | None = None  # first K samples of the spread over physics kinds
    like_file_list: Path | None = None  # make exactly the files of a CMS file list instead
    vector_branches: bool = False  # jagged branches as std::vector<T>, as CMS TauTuples hold them
    overwrite: bool = False  # replace files at the planned names that generate did not write

    def __post_init__(self) -> None:
        compression_codec(self.compression)
        for name in ("files_per_sample", "entries_per_file"):
            if getattr(self, name) < 1:
                raise GenerateOptionsError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise GenerateOptionsError(f"seed must be >= 0, got {self.seed}")
        if self.max_samples is not None and self.max_samples < 1:
            raise GenerateOptionsError(f"max_samples must be >= 1 or None, got {self.max_samples}")


@dataclass(frozen=True)
class FileTask:
    """One file to write: the unit of work handed to a worker process."""

    path: Path
    sample: Sample
    file_index: int
    n_entries: int
    seed: int
    compression: str
    vector_branches: bool = False


def compression_codec(name: str) -> Any:
    """The uproot compression object for ``name`` (None for ``"none"``); ValueError otherwise."""
    key = name.lower()
    if key == "none":
        return None
    if key not in COMPRESSION_LEVELS:
        raise GenerateOptionsError(
            f"unknown compression {name!r}; valid choices: {', '.join(COMPRESSION_CHOICES)}"
        )
    import uproot

    codec = {"zlib": uproot.ZLIB, "lzma": uproot.LZMA, "lz4": uproot.LZ4, "zstd": uproot.ZSTD}
    return codec[key](COMPRESSION_LEVELS[key])


def select_samples(max_samples: int | None = None) -> tuple[Sample, ...]:
    """The first ``max_samples`` samples of a round robin over physics kinds, in catalogue order.

    Kinds are visited DY, TT, QCD, ElecGun, MuonGun, HTauTau, ZprimeTauTau, WJets, then the
    rest; inside a kind PU200 comes before PU140 and NoPU. ``None`` selects every sample.
    """
    if max_samples is None or max_samples >= len(SAMPLES):
        return SAMPLES
    kinds = [*_SPREAD_ORDER, *(k for k in PHYSICS_KINDS if k not in _SPREAD_ORDER)]
    queues = [
        sorted(
            (i for i, s in enumerate(SAMPLES) if s.physics == kind),
            key=lambda i: (_PILEUP_PREFERENCE.index(SAMPLES[i].pileup), i),
        )
        for kind in kinds
    ]
    depth = max(len(q) for q in queues)
    spread = [q[d] for d in range(depth) for q in queues if d < len(q)]
    return tuple(SAMPLES[i] for i in sorted(spread[:max_samples]))


def file_path(output_dir: Path, sample: Sample, file_index: int) -> Path:
    """Where file ``file_index`` (1-based) of ``sample`` goes, in the CRAB layout."""
    return (
        output_dir / CAMPAIGN / "crab_output" / sample.directory / f"eventTuple_{file_index}.root"
    )


_LISTED_FILE = re.compile(CAMPAIGN + r"/crab_output/(.+)/(eventTuple_[^/]+\.root)$")


def files_like(file_list: Path) -> list[tuple[Sample, str]]:
    """(sample, file name) of every path of a CMS file list, such as the original `flist.txt`."""
    by_directory = {sample.directory: sample for sample in SAMPLES}
    try:
        lines = [line.strip() for line in file_list.read_text().splitlines() if line.strip()]
    except OSError as err:
        raise GenerateOptionsError(f"{file_list}: cannot read: {err.strerror or err}") from err
    files = []
    for line in lines:
        match = _LISTED_FILE.search(line)
        if match is None or match.group(1) not in by_directory:
            raise GenerateOptionsError(f"{file_list}: no known sample in path {line!r}")
        files.append((by_directory[match.group(1)], match.group(2)))
    return files


def plan_files(options: GenerateOptions) -> tuple[FileTask, ...]:
    """Every file of the dataset, in file-list order."""
    output_dir = Path(options.output_dir).resolve()
    if options.like_file_list is not None:
        # the file's line number seeds its content, so every listed file differs
        return tuple(
            FileTask(
                file_path(output_dir, sample, 1).with_name(name),
                sample,
                line,
                options.entries_per_file,
                options.seed,
                options.compression,
                options.vector_branches,
            )
            for line, (sample, name) in enumerate(files_like(options.like_file_list), start=1)
        )
    return tuple(
        FileTask(
            file_path(output_dir, sample, k),
            sample,
            k,
            options.entries_per_file,
            options.seed,
            options.compression,
            options.vector_branches,
        )
        for sample in select_samples(options.max_samples)
        for k in range(1, options.files_per_sample + 1)
    )


def generate_dataset(
    options: GenerateOptions, workers: int = 1, reporter: Reporter | None = None
) -> Path:
    """Writes the files and <output_dir>/flist.txt (absolute paths, one per line); returns the
    file-list path. The files are the same whatever ``workers`` is; ``reporter`` shows the
    progress.

    With ``workers > 1`` files are written by a spawn-started process pool, so a script that
    calls this must guard its top level with ``if __name__ == "__main__":``.
    """
    if workers < 1:
        raise GenerateOptionsError(f"workers must be >= 1, got {workers}")
    tasks = plan_files(options)
    if not options.overwrite:
        _refuse_foreign_files([task.path for task in tasks])
    log.info(
        "generating %d files x %d entries into %s with %d worker(s)",
        len(tasks),
        options.entries_per_file,
        options.output_dir,
        workers,
    )
    reporter = reporter or SilentReporter()
    if workers == 1:
        for task in reporter.track(tasks, len(tasks), "generating files"):
            _run_task(task)
    else:
        # spawn: forking a process that may hold threads (uproot, numpy) is unsafe.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(_run_task, task) for task in tasks]
            for future in reporter.track(as_completed(futures), len(tasks), "generating files"):
                future.result()
    flist = Path(options.output_dir).resolve() / "flist.txt"
    tmp = flist.with_name(flist.name + ".tmp")
    tmp.write_text("".join(f"{task.path}\n" for task in tasks))
    os.replace(tmp, flist)
    return flist


# a string every generated file holds: a file without it at a planned name is someone else's
GENERATED_MARK = "bb_generated"


def _refuse_foreign_files(paths: list[Path]) -> None:
    """GenerateOptionsError naming the planned files that exist and were not written by
    generate: `--like-file-list` names files as a real production does, and an output
    directory that holds the real ones must not lose them."""
    import uproot

    foreign = []
    for path in paths:
        if not path.exists():
            continue
        try:
            with uproot.open(path) as handle:
                ours = GENERATED_MARK in handle.keys(cycle=False)
        except Exception:  # unreadable, or not ROOT: not one of ours
            ours = False
        if not ours:
            foreign.append(path)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise GenerateOptionsError(
            f"{foreign[0]}{more} exists and was not written by generate; choose another "
            "directory, or pass --overwrite to replace it"
        )


def _run_task(task: FileTask) -> None:
    """Writes one planned file (module-level so that worker processes can unpickle it)."""
    generate_file(
        task.path,
        task.sample,
        task.n_entries,
        task.seed,
        task.compression,
        file_index=task.file_index,
        vector_branches=task.vector_branches,
    )


def generate_file(
    path: Path,
    sample: Sample,
    n_entries: int,
    seed: int,
    compression: str,
    *,
    file_index: int = 1,
    vector_branches: bool = False,
) -> None:
    """Writes ``n_entries`` candidates of ``sample`` as file ``file_index`` (``k``) to ``path``,
    through ``<name>.tmp`` and an atomic rename. Jagged branches are counted arrays sharing one
    counter per group (``pfCand_pt[npfCand]``), or with `vector_branches` ``std::vector<T>``
    branches without counters, as ROOT writes CMS TauTuples; the values are the same."""
    import uproot

    codec = compression_codec(compression)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # CHUNK_ENTRIES is read here, at call time, so that it can be patched on this module
    chunks = generate_chunks(
        sample, n_entries, seed, file_index=file_index, chunk_entries=CHUNK_ENTRIES
    )
    try:
        with uproot.recreate(tmp, compression=codec) as out:
            out[GENERATED_MARK] = "balanced-batches generate: synthetic data"
            if vector_branches:
                _write_vectors(out, chunks)
            else:
                tree = out.mktree("taus", _tree_types(), title="taus")
                for chunk in chunks:
                    tree.extend(chunk)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.debug("wrote %s (%d entries)", path, n_entries)


def _write_vectors(out: Any, chunks: Iterator[dict[str, Any]]) -> None:
    """Tree ``taus`` with every group member as a ``std::vector`` branch (`io.ttree_writer`)."""
    from ..io.ttree_writer import BranchType, mktree

    branches = [BranchType(name, "scalar", dtype) for name, dtype in SCALAR_BRANCHES.items()]
    branches += [
        BranchType(f"{group}_{field}", "vector", dtype)
        for group, fields in JAGGED_GROUPS.items()
        for field, dtype in fields.items()
    ]
    with mktree(out, "taus", branches, title="taus") as tree:
        for chunk in chunks:
            columns = {name: chunk[name] for name in SCALAR_BRANCHES}
            for group, fields in JAGGED_GROUPS.items():
                columns.update({f"{group}_{field}": chunk[group][field] for field in fields})
            tree.extend(columns)


def _tree_types() -> dict[str, Any]:
    """``mktree`` branch types: numpy dtypes, and ``var * {field: type, ...}`` per group."""
    types: dict[str, Any] = dict(SCALAR_BRANCHES)
    for group, fields in JAGGED_GROUPS.items():
        inner = ", ".join(f"{field}: {dtype.name}" for field, dtype in fields.items())
        types[group] = f"var * {{{inner}}}"
    return types
