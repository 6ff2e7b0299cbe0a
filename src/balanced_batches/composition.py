"""Composition: how many candidates of each region every batch takes.

The original rule, and the default, takes the same N (`events_per_batch_type`) from every
planned region of every process key. `plan.composition` changes that per (process key, type)
*group* of regions:

- `types` and `processes` give ratios: a group takes N x (its planned regions) x (its type's
  ratio) x (its process's ratio) candidates per batch (genuine 2 : jet 1 doubles the genuine
  taus). A ratio of -1 means *all there is*: each of the group's regions takes
  floor(candidates / batches) per batch, unbalanced, every candidate used at most once.
- `spectrum` spreads a group's candidates over its pT x |eta| regions: `flat` (the same number
  in each, the default), `type:NAME` (in proportion to that type's counts in the region,
  summed over the process keys: every type then follows its pT x |eta| spectrum, as UPP's
  `target` and weaver's `ref` do) or `process:NAME` (in proportion to that process's counts of
  the group's type in the region).

Per-batch counts are exact integers: a group's total is rounded to the nearest integer, then
shared among its regions by the largest-remainder method (ties to the region listed first),
so the group's regions add up to its total exactly. A region whose share rounds to 0 is not
planned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import PlanError

ALL_THERE_IS = -1


@dataclass(frozen=True)
class Composition:
    """Ratios per type and per process (1 where not given), and the target spectrum."""

    type_ratios: dict[str, float]
    process_ratios: dict[str, float]
    spectrum: str = "flat"  # flat, type:NAME or process:NAME

    @property
    def is_original(self) -> bool:
        """True for the original rule: N from every region."""
        return (
            self.spectrum == "flat"
            and all(r == 1 for r in self.type_ratios.values())
            and all(r == 1 for r in self.process_ratios.values())
        )


def largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    """Integers adding up to `total`, each the floor of its share or one more: the largest
    fractional parts get the ones left (ties to the first). `shares` add up to `total`."""
    floors = np.floor(shares).astype(np.int64)
    left = total - int(floors.sum())
    if left > 0:
        order = np.argsort(-(shares - floors), kind="stable")
        floors[order[:left]] += 1
    result: np.ndarray = floors
    return result


@dataclass(frozen=True)
class StreamGroups:
    """The planned streams of one split as (process key, type, pT x |eta| cell)."""

    key: np.ndarray  # process key index of each stream
    type: np.ndarray  # type index
    cell: np.ndarray  # pT x |eta| cell (region within its type)
    process: list[str]  # process of every process key
    type_names: tuple[str, ...]


def per_batch_counts(
    groups: StreamGroups,
    reference: np.ndarray | None,
    per_batch: int,
    composition: Composition,
) -> np.ndarray:
    """Candidates per batch of every stream (`ALL_THERE_IS` for groups that take all there
    is; they are fixed once the number of batches is). `reference`: the spectrum weights per
    (type, cell), or None for flat."""
    counts = np.zeros(len(groups.key), dtype=np.int64)
    group_id = groups.key * len(groups.type_names) + groups.type
    for group in np.unique(group_id):
        members = np.flatnonzero(group_id == group)
        key, type_index = int(groups.key[members[0]]), int(groups.type[members[0]])
        ratio = composition.type_ratios.get(groups.type_names[type_index], 1.0)
        ratio_p = composition.process_ratios.get(groups.process[key], 1.0)
        if ALL_THERE_IS in (ratio, ratio_p):
            counts[members] = ALL_THERE_IS
            continue
        total = int(np.floor(per_batch * len(members) * ratio * ratio_p + 0.5))
        if reference is None:
            weights = np.ones(len(members))
        else:
            weights = reference[type_index, groups.cell[members]].astype(np.float64)
        if weights.sum() <= 0:
            continue  # the reference has none of this group's regions: none planned
        counts[members] = largest_remainder(total * weights / weights.sum(), total)
    return counts


def reference_spectrum(
    spectrum: str,
    totals: np.ndarray,
    process: list[str],
    type_names: tuple[str, ...],
    cells_per_type: int,
) -> np.ndarray | None:
    """Spectrum weights per (type, cell) from a split's (keys, regions) counts: None for flat;
    `type:NAME` gives every type NAME's counts (all keys); `process:NAME` gives each type
    that process's counts of it."""
    if spectrum == "flat":
        return None
    kind, _, name = spectrum.partition(":")
    by_type = totals.reshape(len(process), len(type_names), cells_per_type)
    if kind == "type":
        shape = by_type[:, type_names.index(name)].sum(axis=0)
        weights: np.ndarray = np.broadcast_to(shape, (len(type_names), cells_per_type))
        return weights
    keys = [i for i, p in enumerate(process) if p == name]
    if not keys or not by_type[keys].any():
        raise PlanError(f"plan.composition.spectrum {spectrum!r}: process {name} has no candidates")
    summed: np.ndarray = by_type[keys].sum(axis=0)
    return summed


def fill_all_there_is(counts: np.ndarray, totals: np.ndarray, n_batches: int) -> np.ndarray:
    """Per-batch counts with the `ALL_THERE_IS` streams set to floor(candidates / batches)."""
    filled = counts.copy()
    taking_all = counts == ALL_THERE_IS
    filled[taking_all] = totals[taking_all] // max(n_batches, 1)
    return filled
