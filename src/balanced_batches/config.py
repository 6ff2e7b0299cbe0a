"""Configuration: typed models, the original YAML files, and one-line error messages.

The original workflow's `process_types.yaml` and `binning.yaml` are read unchanged.
A project YAML can gather everything in one file; its `processes` and `binning`
keys take either a path to an original file or the same content inline.
Everything is validated here, once; later stages only see these models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .splits import parse_split_by

PILEUP_SCENARIOS = ("NoPU", "PU140", "PU200")
PileupChoice = Literal["NoPU", "PU140", "PU200", "all", "none"]
OutputFormat = Literal["root", "rntuple", "parquet"]

# The four true candidate types of the original workflow, in its order.
STANDARD_TYPES: dict[str, str] = {
    "electron": "genLepton_index >= 0 && (genLepton_kind == 1 || genLepton_kind == 3)",
    "muon": "genLepton_index >= 0 && (genLepton_kind == 2 || genLepton_kind == 4)",
    "jet": "genLepton_index == -1",
    "genuine": "genLepton_index >= 0 && genLepton_kind == 5",
}
MAX_BINS = 100_000
_TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_COMPRESSION = re.compile(r"^(none|(zlib|lzma|lz4|zstd)(:\d{1,2})?)$", re.IGNORECASE)
# the levels each algorithm takes (uproot's and ROOT's limits)
COMPRESSION_LEVELS = {"zlib": 9, "lzma": 9, "lz4": 12, "zstd": 22}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Binning(_Model):
    """pT and |eta| binning as `[start, stop, step]` triples, as in the original `binning.yaml`."""

    pt: list[tuple[float, float, float]]
    abseta: list[tuple[float, float, float]]

    @field_validator("pt", "abseta")
    @classmethod
    def _valid_triples(
        cls, triples: list[tuple[float, float, float]]
    ) -> list[tuple[float, float, float]]:
        if not triples:
            raise ValueError("needs at least one [start, stop, step] triple")
        n_edges = 0.0
        for start, stop, step in triples:
            if step <= 0:
                raise ValueError(f"step must be positive in [{start}, {stop}, {step}]")
            if stop <= start:
                raise ValueError(f"stop must exceed start in [{start}, {stop}, {step}]")
            n_edges += (stop - start) / step
        if not n_edges <= MAX_BINS:
            raise ValueError(f"more than {MAX_BINS} bins")
        edges = edges_from_triples(triples)
        if np.any(np.diff(edges) <= 0):
            raise ValueError(f"bin edges are not increasing: {edges.tolist()}")
        return triples

    def pt_edges(self) -> np.ndarray:
        """Lower edges of the pT bins plus the start of the overflow bin."""
        return edges_from_triples(self.pt)

    def abseta_edges(self) -> np.ndarray:
        """Lower edges of the |eta| bins plus the start of the overflow bin."""
        return edges_from_triples(self.abseta)


def edges_from_triples(triples: list[tuple[float, float, float]]) -> np.ndarray:
    """`arange(start, stop, step)` of every triple, then the last stop (the original rule)."""
    parts = [np.arange(start, stop, step) for start, stop, step in triples]
    return np.concatenate([*parts, np.array([triples[-1][1]], dtype=np.float64)])


class ProcessType(_Model):
    """One entry of `process_types.yaml`."""

    regex: str
    active_types: list[str] = Field(default_factory=list)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, regex: str) -> str:
        try:
            re.compile(regex)
        except re.error as err:
            raise ValueError(f"regular expression does not compile: {err}") from err
        return regex


class InputsConfig(_Model):
    """Where the input files are and how to name them."""

    file_list: str | None = None
    glob: str | None = None
    tree: str = "taus"
    replace_prefix: str | None = Field(default=None, description="OLD@NEW")
    campaign: str | None = None

    @field_validator("replace_prefix")
    @classmethod
    def _old_at_new(cls, value: str | None) -> str | None:
        if value is not None and "@" not in value:
            raise ValueError("must have the form OLD@NEW")
        return value


class RegionVariables(_Model):
    """The expressions whose values are binned in pT and |eta|."""

    pt: str = "tau_pt"
    abseta: str = "abs(tau_eta)"


class CompositionConfig(_Model):
    """What every batch holds beyond the original N per region (see `composition.py`)."""

    types: dict[str, float] = Field(default_factory=dict)  # ratio per type, -1: all there is
    processes: dict[str, float] = Field(default_factory=dict)  # ratio per process
    spectrum: str = "flat"  # flat, type:NAME or process:NAME

    @field_validator("types", "processes")
    @classmethod
    def _ratios(cls, ratios: dict[str, float]) -> dict[str, float]:
        for name, ratio in ratios.items():
            if not (ratio > 0 or ratio == -1):
                raise ValueError(f"ratio of {name!r} must be positive, or -1 for all there is")
        return ratios

    @field_validator("spectrum")
    @classmethod
    def _spectrum(cls, spectrum: str) -> str:
        kind, colon, name = spectrum.partition(":")
        if spectrum != "flat" and not (kind in ("type", "process") and colon and name):
            raise ValueError("expected flat, type:NAME or process:NAME")
        return spectrum


class PlanConfig(_Model):
    """How batches are planned."""

    pileup: PileupChoice = "all"
    events_per_batch_type: int | None = Field(default=None, gt=0)
    batches: int | None = Field(default=None, gt=0)
    max_reuse: int | None = Field(default=None, gt=0)
    seed: int = Field(default=12345, ge=0)
    # held-out data: split name -> fraction of the events (drawn by a seeded hash of the
    # `split_by` branches), or only the names when `split_by` is a rule (see `splits.py`)
    splits: dict[str, float] | list[str] | None = None
    split_by: list[str] | str = Field(default_factory=lambda: ["run", "lumi", "evt"])
    split_seed: int = Field(default=0, ge=0)
    composition: CompositionConfig = Field(default_factory=CompositionConfig)

    @field_validator("splits")
    @classmethod
    def _split_names(
        cls, splits: dict[str, float] | list[str] | None
    ) -> dict[str, float] | list[str] | None:
        if splits is None:
            return None
        names = list(splits)
        if not names:
            raise ValueError("name at least one split, or leave 'splits' out")
        for name in names:
            if not _SPLIT_NAME.match(name):
                raise ValueError(
                    f"split name {name!r} must be letters, digits, '_' or '-' (it names a "
                    "directory)"
                )
        if len(set(names)) != len(names):
            raise ValueError("split names must differ")
        if isinstance(splits, dict):
            for name, fraction in splits.items():
                if not 0 < fraction <= 1:
                    raise ValueError(f"fraction of split {name!r} must be in (0, 1]: {fraction}")
            if sum(splits.values()) > 1 + 1e-9:
                raise ValueError(f"the fractions add up to {sum(splits.values()):g}, more than 1")
        return splits

    @field_validator("split_by")
    @classmethod
    def _identity_or_rule(cls, split_by: list[str] | str) -> list[str] | str:
        if isinstance(split_by, str):  # `evt` or `run,lumi,evt` name branches, as on the CLI
            split_by = parse_split_by(split_by)
        if isinstance(split_by, list) and not split_by:
            raise ValueError("name the branches that identify an event, e.g. [run, lumi, evt]")
        return split_by

    @model_validator(mode="after")
    def _splits_match_split_by(self) -> PlanConfig:
        if self.splits is None:
            return self
        rule = isinstance(self.split_by, str)
        if rule and (isinstance(self.splits, dict) or len(self.splits) != 2):
            raise ValueError(
                f"key 'plan.split_by' = {self.split_by!r} is a rule: it needs exactly two "
                "split names (true -> the first, false -> the second) and no fractions, "
                "e.g. splits: [train, test]"
            )
        if not rule and isinstance(self.splits, list):
            raise ValueError(
                "key 'plan.splits' lists names without fractions: give fractions "
                "(train: 0.8, test: 0.2) or a split_by rule such as 'evt % 2 == 0'"
            )
        return self


class OutputConfig(_Model):
    """Where and how balanced batches are written."""

    directory: str = "batches"
    name: str = "batch{index}"
    format: OutputFormat = "root"
    compression: str = "zstd:5"
    batches_per_file: int = Field(default=1, gt=0)
    overwrite: bool = Field(
        default=False, description="replace planned output files this tool did not write"
    )
    # glob patterns of the input branches to write (None: all), then those to leave out; the
    # branches the selection reads are always written (`check` verifies the balance on them)
    branches: list[str] | None = None
    drop_branches: list[str] = Field(default_factory=list)
    # bb_weight: each candidate's inverse selection probability, which restores the input
    # spectrum (candidates of its stream in the input / uses of them in the outputs)
    weights: bool = False

    @field_validator("compression")
    @classmethod
    def _known_compression(cls, value: str) -> str:
        if not _COMPRESSION.match(value):
            raise ValueError("expected none, zlib, lzma, lz4 or zstd, optionally with :LEVEL")
        algorithm, _, level = value.lower().partition(":")
        highest = COMPRESSION_LEVELS.get(algorithm)
        if highest is not None and level and int(level) > highest:
            raise ValueError(f"{algorithm} levels go from 0 to {highest}")
        return value.lower()

    @field_validator("name")
    @classmethod
    def _has_index(cls, value: str) -> str:
        if "{index}" not in value or "/" in value:
            raise ValueError("must contain {index} and no '/'")
        if value.startswith(".") or any(not c.isprintable() for c in value):
            raise ValueError("must not start with '.' or hold control characters")
        try:
            value.format(index=0)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"braces other than {{index}} ({err})") from None
        return value


class ExecutionConfig(_Model):
    """Resources of one worker and how many run at once."""

    workers: int | None = Field(default=None, gt=0)
    chunk_mb: int = Field(default=256, gt=0, description="uncompressed input read at once")
    unit_memory_mb: int = Field(default=1024, gt=0, description="data one write unit holds")
    scratch: str | None = None
    retries: int = Field(default=2, ge=0, description="extra attempts of a failed unit per run")


class BatchConfig(_Model):
    """Resources and site settings of batch jobs (HTCondor, Slurm)."""

    cores: int = Field(default=1, gt=0)
    memory_mb: int = Field(default=4000, gt=0)
    disk_mb: int = Field(default=10000, gt=0)
    walltime: str = Field(default="04:00:00", pattern=r"^\d+:\d{2}:\d{2}$")
    extra_lines: list[str] = Field(
        default_factory=list, description="submit-file lines, e.g. accounting_group = ..."
    )
    setup: list[str] = Field(default_factory=list, description="shell lines run before a job")
    command: str | None = Field(default=None, description="how jobs call balanced-batches")
    # grid credentials for jobs that read or write root:// storage: the submitter's X.509
    # proxy (HTCondor's use_x509userproxy, X509_USER_PROXY in the job), WLCG tokens
    # (use_oauth_services; the first service's token becomes BEARER_TOKEN_FILE)
    x509_proxy: bool = False
    # names go into submit files and job scripts as they are
    oauth_services: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]] = Field(
        default_factory=list
    )

    @property
    def walltime_seconds(self) -> int:
        """`walltime` in seconds (HTCondor's +MaxRuntime)."""
        hours, minutes, seconds = (int(part) for part in self.walltime.split(":"))
        return hours * 3600 + minutes * 60 + seconds

    def credential_submit_lines(self) -> list[str]:
        """HTCondor submit lines that send the submitter's grid credentials with each job."""
        lines = ["use_x509userproxy = true"] if self.x509_proxy else []
        if self.oauth_services:
            lines.append(f"use_oauth_services = {', '.join(self.oauth_services)}")
        return lines

    def token_setup(self) -> list[str]:
        """The shell line that points BEARER_TOKEN_FILE at the token HTCondor leaves in the
        job's credentials directory for the first of `oauth_services` (none without them)."""
        if not self.oauth_services:
            return []
        token = f'"$_CONDOR_CREDS/{self.oauth_services[0]}.use"'
        return [
            f'if [ -n "${{_CONDOR_CREDS:-}}" ] && [ -f {token} ]; '
            f"then export BEARER_TOKEN_FILE={token}; fi"
        ]


class ProjectConfig(_Model):
    """Everything a production needs; every stage reads the part it uses."""

    inputs: InputsConfig = Field(default_factory=InputsConfig)
    processes: dict[str, ProcessType] = Field(default_factory=dict)
    binning: Binning | None = None
    types: dict[str, str] = Field(default_factory=lambda: dict(STANDARD_TYPES))
    regions: RegionVariables = Field(default_factory=RegionVariables)
    plan: PlanConfig = Field(default_factory=PlanConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)

    @field_validator("types")
    @classmethod
    def _type_names(cls, types: dict[str, str]) -> dict[str, str]:
        if not types:
            raise ValueError("at least one type is needed")
        for name in types:
            if not _TYPE_NAME.match(name):
                raise ValueError(f"type name {name!r} must be letters and digits only")
        return types

    @model_validator(mode="after")
    def _active_types_exist(self) -> ProjectConfig:
        for process, spec in self.processes.items():
            for type_name in spec.active_types:
                if type_name not in self.types:
                    raise ValueError(
                        f"key 'processes.{process}.active_types' = {type_name!r}: unknown "
                        f"type; defined types: {', '.join(self.types)}"
                    )
        return self

    @model_validator(mode="after")
    def _composition_names_exist(self) -> ProjectConfig:
        composition = self.plan.composition
        kind, _, name = composition.spectrum.partition(":")
        types, processes = list(self.types), list(self.processes)
        named = [("types", t, types) for t in composition.types]
        named += [("processes", p, processes) for p in composition.processes]
        if kind == "type":
            named.append(("spectrum", name, types))
        if kind == "process":
            named.append(("spectrum", name, processes))
        for key, value, known in named:
            if known is processes and not processes:
                continue  # processes may come later, from the command line
            if value not in known:
                raise ValueError(
                    f"key 'plan.composition.{key}' = {value!r}: unknown; defined: "
                    f"{', '.join(known)}"
                )
        return self


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line naming the source, the key and the offending value of the first problem."""
    problems = err.errors()
    first = problems[0]
    key = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = "" if isinstance(value, Mapping) else f" = {value!r}"
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    if not key and isinstance(value, Mapping):  # a check across keys: its message names them
        return f"{source}: {message}{more}"
    return f"{source}: key '{key or '(top level)'}'{shown}: {message}{more}"


def read_yaml(path: Path) -> Any:
    """Reads a YAML file, turning every failure into a one-line ConfigError."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from err


def validate(model: Any, data: Any, source: str) -> Any:
    """Validates `data` against a model or type, raising ConfigError with a one-line message."""
    try:
        return TypeAdapter(model).validate_python(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from err


def load_process_types(path: Path) -> dict[str, ProcessType]:
    """Reads an original `process_types.yaml`."""
    data = read_yaml(path)
    result: dict[str, ProcessType] = validate(dict[str, ProcessType], data, str(path))
    return result


def load_binning(path: Path) -> Binning:
    """Reads an original `binning.yaml`."""
    result: Binning = validate(Binning, read_yaml(path), str(path))
    return result


def _resolve_relative(value: str, base: Path) -> str:
    if "://" in value or Path(value).is_absolute():
        return value
    return str((base / value).resolve())


def load_project(path: Path) -> ProjectConfig:
    """Reads a project YAML; `processes` and `binning` may name original files."""
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    base = path.resolve().parent
    data = dict(data)
    if isinstance(data.get("processes"), str):
        processes_path = Path(_resolve_relative(data["processes"], base))
        data["processes"] = _as_plain(load_process_types(processes_path))
    if isinstance(data.get("binning"), str):
        data["binning"] = load_binning(Path(_resolve_relative(data["binning"], base))).model_dump()
    inputs = data.get("inputs")
    if isinstance(inputs, dict):
        for key in ("file_list", "glob"):
            if isinstance(inputs.get(key), str):
                inputs = {**inputs, key: _resolve_relative(inputs[key], base)}
        data["inputs"] = inputs
    output = data.get("output")
    if isinstance(output, dict) and isinstance(output.get("directory"), str):
        data["output"] = {**output, "directory": _resolve_relative(output["directory"], base)}
    result: ProjectConfig = validate(ProjectConfig, data, str(path))
    return result


def _as_plain(processes: dict[str, ProcessType]) -> dict[str, Any]:
    return {name: spec.model_dump() for name, spec in processes.items()}


def with_overrides(
    config: ProjectConfig, overrides: Mapping[str, Any], source: str
) -> ProjectConfig:
    """A copy of `config` with dotted keys (`plan.pileup`) replaced; `None` values are ignored."""
    data = config.model_dump()
    for dotted, value in overrides.items():
        if value is None:
            continue
        *sections, key = dotted.split(".")
        place = data
        for section in sections:
            place[section] = dict(place[section])
            place = place[section]
        place[key] = value
    result: ProjectConfig = validate(ProjectConfig, data, source)
    return result
