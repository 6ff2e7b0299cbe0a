"""The plan: which candidates of which files go to which batch, as a pure function of a few arrays.

A *stream* is one (split, process key, region). Its candidates are those of its member files
in list order; candidate c of a stream with C candidates sits at position
`permute(c)` of a seeded random order, and reuse is that order repeated. Batch b
takes positions [b*k, (b+1)*k), k being the stream's candidates per batch (N, or what
`plan.composition` gives it). Only the stream table and its member files are
stored; every assignment is recomputed where it is needed.

Intermediate parts and write units number every use globally: batch `g` (global) holds the
*global positions* [g*P, (g+1)*P), P = `slots` being the largest k; slot j < k of stream s in
that batch is position g*P + j.

Each split has its own batches, balanced on its own. Batches are numbered globally, split
after split (`split_first_batch`); so are output files, each holding batches of one split
only (`output_files`). Without splits there is one unnamed split and the two numberings are
the split's own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .shuffle import permute, stream_key, unpermute


@dataclass(frozen=True)
class Plan:
    """A balanced-batch plan; arrays are indexed by stream or by member (stream, file) pair."""

    seed: int
    per_batch: int
    n_batches: int
    batches_per_file: int
    files_per_unit: int
    process_keys: tuple[str, ...]
    region_names: tuple[str, ...]
    stream_key_index: np.ndarray = field(repr=False)  # (S,) index into process_keys
    stream_region: np.ndarray = field(repr=False)  # (S,) region index
    member_ptr: np.ndarray = field(repr=False)  # (S+1,) members of stream s: ptr[s]:ptr[s+1]
    member_file: np.ndarray = field(repr=False)  # (M,) catalog file id
    member_count: np.ndarray = field(repr=False)  # (M,) candidates of the stream in the file
    created: str = "2000-01-01T00:00:00"  # when the plan was made (ISO, UTC)
    split_names: tuple[str, ...] = ("",)  # ("",): no splits
    stream_split: np.ndarray | None = field(default=None, repr=False)  # (S,) None: all split 0
    split_batches: np.ndarray | None = field(default=None, repr=False)  # None: (n_batches,)
    stream_per_batch: np.ndarray | None = field(default=None, repr=False)  # None: N each

    def __post_init__(self) -> None:
        if self.stream_split is None:
            object.__setattr__(self, "stream_split", np.zeros(len(self.stream_region), np.int32))
        if self.split_batches is None:
            object.__setattr__(self, "split_batches", np.array([self.n_batches], np.int64))
        if self.stream_per_batch is None:
            per_batch = np.full(len(self.stream_region), self.per_batch, np.int64)
            object.__setattr__(self, "stream_per_batch", per_batch)

    @property
    def takes(self) -> np.ndarray:
        """Candidates every batch takes from every stream."""
        assert self.stream_per_batch is not None
        return self.stream_per_batch

    @cached_property
    def slots(self) -> int:
        """P: global positions per batch, the most any stream takes."""
        return int(self.takes.max()) if len(self.takes) else self.per_batch

    @property
    def splits(self) -> np.ndarray:
        """Split of every stream."""
        assert self.stream_split is not None
        return self.stream_split

    @property
    def batches_of_split(self) -> np.ndarray:
        """Batches of every split."""
        assert self.split_batches is not None
        return self.split_batches

    @cached_property
    def split_first_batch(self) -> np.ndarray:
        """Global number of every split's first batch, then the number of batches."""
        return np.concatenate([[0], np.cumsum(self.batches_of_split)]).astype(np.int64)

    @cached_property
    def stream_needed(self) -> np.ndarray:
        """Uses every stream's candidates make: its split's batches times what it takes."""
        needed: np.ndarray = self.batches_of_split[self.splits].astype(np.int64) * self.takes
        return needed

    @cached_property
    def stream_first_batch(self) -> np.ndarray:
        """Global number of the first batch of every stream's split."""
        first: np.ndarray = self.split_first_batch[self.splits]
        return first

    @cached_property
    def output_files(self) -> OutputFiles:
        """Every output file's split, number within it and global batches."""
        per_split = -(-self.batches_of_split // self.batches_per_file)
        split = np.repeat(np.arange(len(self.split_names)), per_split)
        local = np.arange(len(split)) - np.repeat(np.cumsum(per_split) - per_split, per_split)
        first = self.split_first_batch[split] + local * self.batches_per_file
        stop = np.minimum(first + self.batches_per_file, self.split_first_batch[split + 1])
        return OutputFiles(split, local, first, stop)

    @cached_property
    def unit_first_positions(self) -> np.ndarray:
        """Global position of every write unit's first use, then the number of positions."""
        first_files = np.arange(self.n_write_units) * self.files_per_unit
        firsts = self.output_files.first_batch[first_files]
        return np.append(firsts, self.n_batches).astype(np.int64) * self.slots

    @cached_property
    def rows_per_batch(self) -> np.ndarray:
        """Rows of every split's batches: what its streams take, added up."""
        rows: np.ndarray = np.bincount(
            self.splits, self.takes, minlength=len(self.split_names)
        ).astype(np.int64)
        return rows

    def streams_of_split(self, split: int) -> np.ndarray:
        """Streams of one split."""
        return np.flatnonzero(self.splits == split)

    @cached_property
    def id(self) -> str:
        """Names this plan (its settings, arrays and when it was made), e.g. in the name of
        its scratch directory."""
        parameters, arrays = self.to_arrays()
        digest = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode())
        for name in sorted(arrays):
            digest.update(np.ascontiguousarray(arrays[name]).tobytes())
        return digest.hexdigest()[:12]

    @property
    def n_streams(self) -> int:
        """Number of (process key, region) streams."""
        return len(self.stream_region)

    @cached_property
    def member_offset(self) -> np.ndarray:
        """Index of each member's first candidate within its stream."""
        starts = np.cumsum(self.member_count) - self.member_count
        stream_of_member = np.repeat(np.arange(self.n_streams), np.diff(self.member_ptr))
        offsets: np.ndarray = starts - starts[self.member_ptr[:-1]][stream_of_member]
        return offsets

    @cached_property
    def member_stream(self) -> np.ndarray:
        """Stream of each member."""
        return np.repeat(np.arange(self.n_streams), np.diff(self.member_ptr))

    @cached_property
    def stream_index(self) -> np.ndarray:
        """Stream of every (split, process key index, region), -1 where nothing is planned."""
        shape = (len(self.split_names), len(self.process_keys), len(self.region_names))
        table = np.full(shape, -1, dtype=np.int64)
        table[self.splits, self.stream_key_index, self.stream_region] = np.arange(self.n_streams)
        return table

    @cached_property
    def stream_total(self) -> np.ndarray:
        """Candidates per stream."""
        return np.add.reduceat(self.member_count, self.member_ptr[:-1]).astype(np.int64)

    @property
    def n_output_files(self) -> int:
        """Output files: each split's batches grouped `batches_per_file` at a time."""
        return len(self.output_files.split)

    @property
    def n_write_units(self) -> int:
        """Write units: output files grouped `files_per_unit` at a time."""
        return -(-self.n_output_files // self.files_per_unit)

    @cached_property
    def read_files(self) -> np.ndarray:
        """Catalog ids of the files the plan reads, each once, ascending."""
        return np.unique(self.member_file)

    def stream_label(self, stream: int) -> tuple[str, str]:
        """(process key, region name) of a stream."""
        key = self.process_keys[int(self.stream_key_index[stream])]
        return key, self.region_names[int(self.stream_region[stream])]

    def keys_of(self, stream: int) -> np.ndarray:
        """Round keys of a stream's random order (without splits, the same as before
        splits existed: plans and their outputs stay reproducible)."""
        split = self.split_names[int(self.splits[stream])]
        return stream_key(self.seed, *self.stream_label(stream), *((split,) if split else ()))

    @cached_property
    def round_keys(self) -> np.ndarray:
        """Round keys of every stream, (streams, rounds): computed once per plan, not per file."""
        return np.array([self.keys_of(s) for s in range(self.n_streams)], dtype=np.uint64)

    def reuse(self) -> np.ndarray:
        """How often, on average, each stream's candidates are used."""
        reuse: np.ndarray = self.stream_needed / self.stream_total
        return reuse

    def uses_of_member(self, member: int) -> tuple[np.ndarray, np.ndarray]:
        """(rank within the member file's share, position in the stream) of every use."""
        stream = int(self.member_stream[member])
        return member_uses(
            int(self.member_offset[member]),
            int(self.member_count[member]),
            int(self.stream_total[stream]),
            int(self.stream_needed[stream]),
            self.keys_of(stream),
        )

    def candidates_of_batch(self, stream: int, batch: int) -> np.ndarray:
        """Stream candidate indices that batch `batch` (numbered within the stream's split)
        takes from `stream`, by slot."""
        total, k = int(self.stream_total[stream]), int(self.takes[stream])
        positions = np.arange(batch * k, (batch + 1) * k)
        return unpermute(positions % total, total, self.keys_of(stream))

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON parameters, arrays) for the catalog."""
        parameters = {
            "seed": self.seed,
            "per_batch": self.per_batch,
            "n_batches": self.n_batches,
            "batches_per_file": self.batches_per_file,
            "files_per_unit": self.files_per_unit,
            "process_keys": list(self.process_keys),
            "region_names": list(self.region_names),
            "created": self.created,
        }
        arrays = {
            "stream_key_index": self.stream_key_index,
            "stream_region": self.stream_region,
            "member_ptr": self.member_ptr,
            "member_file": self.member_file,
            "member_count": self.member_count,
        }
        if self.split_names != ("",):  # plans without splits keep their id and stored form
            parameters["split_names"] = list(self.split_names)
            arrays["stream_split"] = self.splits
            arrays["split_batches"] = self.batches_of_split
        if np.any(self.takes != self.per_batch):  # so do plans of the original composition
            arrays["stream_per_batch"] = self.takes
        return parameters, arrays

    @classmethod
    def from_arrays(cls, parameters: dict[str, Any], arrays: dict[str, np.ndarray]) -> Plan:
        """Inverse of `to_arrays`."""
        return cls(
            seed=parameters["seed"],
            per_batch=parameters["per_batch"],
            n_batches=parameters["n_batches"],
            batches_per_file=parameters["batches_per_file"],
            files_per_unit=parameters["files_per_unit"],
            process_keys=tuple(parameters["process_keys"]),
            region_names=tuple(parameters["region_names"]),
            created=parameters.get("created", cls.created),
            split_names=tuple(parameters.get("split_names", ("",))),
            **arrays,
        )


@dataclass(frozen=True)
class OutputFiles:
    """The output files of a plan, by global number: each holds batches of one split."""

    split: np.ndarray  # split of the file
    local: np.ndarray  # number of the file within its split (its name's index)
    first_batch: np.ndarray  # global batches [first_batch, stop_batch)
    stop_batch: np.ndarray


def member_uses(
    offset: int, count: int, total: int, needed: int, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Uses of the candidates [offset, offset + count) of a stream of `total` candidates.

    A candidate c is used at positions permute(c) + m*total below `needed`: a stream
    with fewer candidates than needed repeats its shuffled order. Returns the rank
    of each used candidate within [offset, offset + count) and the position it takes.
    """
    _, ranks, positions = members_uses(
        np.array([offset]), np.array([count]), np.array([total]), np.array([needed]), keys[None, :]
    )
    return ranks, positions


def members_uses(
    offsets: np.ndarray,
    counts: np.ndarray,
    totals: np.ndarray,
    needed: np.ndarray | int,
    keys: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`member_uses` of many members at once (`keys`, and `needed` unless one number: one
    per member).

    Returns (member, rank, position) of every use, member by member.
    """
    counts = np.asarray(counts, dtype=np.int64)
    member = np.repeat(np.arange(len(counts)), counts)
    ranks = np.arange(len(member), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    total = np.asarray(totals, dtype=np.int64)[member]
    wanted = np.broadcast_to(np.asarray(needed, dtype=np.int64), counts.shape)[member]
    first = permute(np.asarray(offsets, dtype=np.int64)[member] + ranks, total, keys[member])
    repeats = -(-wanted // total)
    use = np.repeat(np.arange(len(first)), repeats)
    round_of_use = np.arange(len(use)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    positions = first[use] + total[use] * round_of_use
    keep = positions < wanted[use]
    use = use[keep]
    return member[use], ranks[use], positions[keep]
