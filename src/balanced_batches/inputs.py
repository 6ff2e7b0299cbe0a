"""The input file list: paths, catalog names, processes and pile-up scenarios."""

from __future__ import annotations

import glob as globbing
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .config import PILEUP_SCENARIOS, InputsConfig, ProcessType
from .errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputFile:
    """One input file as the catalog knows it."""

    path: str
    name: str
    process: str | None
    pileup: str | None


def replace_prefix(path: str, replacement: str | None) -> str:
    """Applies `OLD@NEW` to the start of a path.

    The original replaced OLD anywhere in the path, and an empty OLD inserted NEW
    between every character; only a leading OLD is replaced here, and an empty OLD
    simply prepends NEW.
    """
    if not replacement:
        return path
    old, _, new = replacement.partition("@")
    if path.startswith(old):
        return new + path[len(old) :]
    return path


def catalog_name(path: str, campaign: str | None) -> str:
    """The file's name: its path from the campaign on, without `/crab_output` (original rule)."""
    if campaign:
        start = path.find(campaign)
        if start >= 0:
            path = path[start:]
    return path.replace("/crab_output", "")


def detect_process(name: str, processes: dict[str, ProcessType]) -> str | None:
    """The first process, in configuration order, whose regex is found in the name."""
    for process, spec in processes.items():
        if re.search(spec.regex, name):
            return process
    return None


def detect_pileup(name: str) -> str | None:
    """The first of NoPU, PU140, PU200 that occurs in the name."""
    for scenario in PILEUP_SCENARIOS:
        if scenario in name:
            return scenario
    return None


def normalised(path: str, base: Path) -> str:
    """A path as the catalog stores it, so that one file has one name: a local path made
    absolute (a relative one is taken from `base`) and normalised (`a/./b`, `a//b` and
    `a/x/../b` become `a/b`); in a URL's path, `.` segments and repeated slashes after its
    leading ones are removed (`root://host//store/./x` -> `root://host//store/x`)."""
    if "://" not in path:
        return os.path.normpath(os.path.join(base, path))
    parts = urlsplit(path)
    if not parts.netloc:
        return path
    lead = len(parts.path) - len(parts.path.lstrip("/"))
    segments = [segment for segment in parts.path[lead:].split("/") if segment not in ("", ".")]
    return urlunsplit(parts._replace(path=parts.path[:lead] + "/".join(segments)))


def list_paths(inputs: InputsConfig) -> list[str]:
    """Input paths from the file list or glob, prefix replaced, normalised, in list order.

    Relative paths in a file list are taken from the list's own directory (after the prefix
    replacement), so that every command finds them from any directory.
    """
    paths: list[str] = []
    if inputs.file_list:
        try:
            lines = Path(inputs.file_list).read_text().splitlines()
        except OSError as err:
            raise ConfigError(
                f"inputs.file_list = {inputs.file_list!r}: cannot read: {err.strerror or err}"
            ) from err
        base = Path(inputs.file_list).resolve().parent
        listed = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        paths.extend(normalised(replace_prefix(p, inputs.replace_prefix), base) for p in listed)
    if inputs.glob:
        matched = sorted(globbing.glob(inputs.glob, recursive=True))
        if not matched:
            raise ConfigError(f"inputs.glob = {inputs.glob!r}: matches no file")
        cwd = Path.cwd()
        paths.extend(normalised(replace_prefix(p, inputs.replace_prefix), cwd) for p in matched)
    if not paths:
        raise ConfigError("no input files: pass --input-file-list or set inputs.file_list/glob")
    unique = list(dict.fromkeys(paths))
    if len(unique) != len(paths):
        log.warning(
            "%d duplicate paths in the input list are counted once", len(paths) - len(unique)
        )
    return unique


def describe_inputs(inputs: InputsConfig, processes: dict[str, ProcessType]) -> list[InputFile]:
    """Every input file with its name, process and pile-up."""
    files = []
    for path in list_paths(inputs):
        name = catalog_name(path, inputs.campaign)
        matches = [p for p, spec in processes.items() if re.search(spec.regex, name)]
        if len(matches) > 1:
            log.warning("%s matches processes %s: the first is used", name, ", ".join(matches))
        files.append(InputFile(path, name, detect_process(name, processes), detect_pileup(name)))
    return files
