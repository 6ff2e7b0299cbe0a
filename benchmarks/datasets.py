"""Benchmark datasets: generated once with `balanced-batches generate`, cached by parameters.

A dataset lives in ``<out>/datasets/<key>/`` where the key spells every generation parameter,
so a cached dataset is reused only when it was made with exactly the same parameters. The
file ``dataset.json`` is written last: a directory without it is an interrupted generation and
is made again.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from .monitor import measure

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "prod_Phase2_v2"
PROCESS_TYPES = EXAMPLE / "process_types.yaml"
BINNING = EXAMPLE / "binning.yaml"
CAMPAIGN = "prod_Phase2_v2"
CLI = str(Path(sys.executable).parent / "balanced-batches")


@dataclass(frozen=True)
class DatasetSpec:
    """Parameters of `balanced-batches generate`."""

    max_samples: int | None
    files_per_sample: int
    entries_per_file: int
    seed: int = 1
    compression: str = "zstd"
    vector_branches: bool = False  # jagged branches as std::vector<T> (`--vector-branches`)

    @property
    def key(self) -> str:
        """Directory name: every parameter, so different parameters never share a cache."""
        samples = "all" if self.max_samples is None else str(self.max_samples)
        return (
            f"s{samples}-f{self.files_per_sample}-e{self.entries_per_file}"
            f"-seed{self.seed}-{self.compression}" + ("-vector" if self.vector_branches else "")
        )


# tiny: the smoke test; small: seconds; medium: ~1 GB of small files; large: several GB, only
# when asked; bigfiles: ~1 GB in 18 files of ~60 MB (fixed costs per file and per run matter
# less, as with real n-tuples of GBs); onefile4gb: one ~4 GB file (memory with large inputs).
SIZES: dict[str, DatasetSpec] = {
    "tiny": DatasetSpec(max_samples=4, files_per_sample=1, entries_per_file=400),
    "small": DatasetSpec(max_samples=10, files_per_sample=1, entries_per_file=2000),
    "medium": DatasetSpec(max_samples=None, files_per_sample=2, entries_per_file=4000),
    "large": DatasetSpec(max_samples=None, files_per_sample=4, entries_per_file=12000),
    "bigfiles": DatasetSpec(max_samples=9, files_per_sample=2, entries_per_file=60000),
    "onefile4gb": DatasetSpec(max_samples=1, files_per_sample=1, entries_per_file=3_800_000),
}


@dataclass(frozen=True)
class Dataset:
    """A generated dataset on disk."""

    spec: DatasetSpec
    directory: Path
    file_list: Path
    files: int
    bytes: int
    entries: int
    generate_s: float | None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready description."""
        return {
            "key": self.spec.key,
            **asdict(self.spec),
            "directory": str(self.directory),
            "files": self.files,
            "bytes": self.bytes,
            "mb": self.bytes / 2**20,
            "entries": self.entries,
            "generate_s": self.generate_s,
        }


def ensure_dataset(spec: DatasetSpec, root: Path, workers: int) -> Dataset:
    """The cached dataset of `spec` under `root`, generated if missing or incomplete."""
    directory = root / "datasets" / spec.key
    marker = directory / "dataset.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        return Dataset(
            spec,
            directory,
            directory / "flist.txt",
            info["files"],
            info["bytes"],
            info["entries"],
            info.get("generate_s"),
        )
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    command = [
        CLI, "generate", str(directory),
        "--files-per-sample", str(spec.files_per_sample),
        "--entries-per-file", str(spec.entries_per_file),
        "--seed", str(spec.seed),
        "--compression", spec.compression,
        "--workers", str(workers),
    ]  # fmt: skip
    if spec.max_samples is not None:
        command += ["--max-samples", str(spec.max_samples)]
    if spec.vector_branches:
        command.append("--vector-branches")
    generated = measure(command)
    paths = [line.strip() for line in (directory / "flist.txt").read_text().splitlines()]
    paths = [path for path in paths if path]
    size = sum(Path(path).stat().st_size for path in paths)
    info = {
        "files": len(paths),
        "bytes": size,
        "entries": len(paths) * spec.entries_per_file,
        "generate_s": generated.wall_s,
        "spec": asdict(spec),
    }
    marker.write_text(json.dumps(info, indent=2))
    return Dataset(
        spec,
        directory,
        directory / "flist.txt",
        len(paths),
        size,
        info["entries"],
        info["generate_s"],
    )


def input_paths(dataset: Dataset) -> list[str]:
    """The dataset's files, in list order."""
    return [line.strip() for line in dataset.file_list.read_text().splitlines() if line.strip()]


def binning_for_regions(n_regions: int, n_types: int = 4) -> tuple[dict[str, object], int]:
    """A binning (original `[start, stop, step]` format) with about `n_regions` regions.

    Regions = types x |eta| bins x pT bins, and a binning with E edges has E bins (the last is
    the overflow bin). |eta| keeps the example's 5 bins when there are enough regions, else 2;
    pT gets the rest, in integer GeV steps from 20 GeV so that `arange` is exact.
    Returns the binning and its exact number of regions.
    """
    n_abseta = 5 if n_regions >= n_types * 5 * 2 else 2
    n_pt = max(2, round(n_regions / (n_types * n_abseta)))
    step = max(1, 80 // (n_pt - 1))
    abseta = [[0.0, 2.4, 0.6]] if n_abseta == 5 else [[0.0, 2.4, 2.4]]
    pt = [[20.0, float(20 + step * (n_pt - 1)), float(step)]]
    return {"pt": pt, "abseta": abseta}, n_types * n_abseta * n_pt


def write_binning(path: Path, binning: dict[str, object]) -> Path:
    """Writes a binning YAML in the original format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(binning, default_flow_style=None))
    return path
