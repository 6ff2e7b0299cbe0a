"""Phase-space regions: true type x |eta| bin x pT bin, as integer indices.

Region index = (type * n_abseta + abseta_bin) * n_pt + pt_bin; -1 means "no region".
Bin j holds `edge[j] <= x < edge[j+1]`, the last bin is the overflow `x >= edge[-1]`,
values below the first edge (or NaN) fall in no bin: exactly the original selections.
Human-readable names (`jet_absetabin1_ptbin3`) appear only at the edges.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError
from .expressions import Expression, parse_expression
from .splits import SplitRule, split_rule

if TYPE_CHECKING:  # a type only: the CLI's display imports this module before any config
    from .config import ProjectConfig

_REGION_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9]*)_absetabin(\d+)_ptbin(\d+)$")


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of every value (the overflow bin is `len(edges) - 1`); -1 below the first edge or NaN."""
    index = np.searchsorted(edges, values, side="right").astype(np.int64) - 1
    index[np.isnan(values)] = -1
    return index


@dataclass(frozen=True)
class RegionSpace:
    """The grid of regions; pure arithmetic between indices and names."""

    type_names: tuple[str, ...]
    pt_edges: tuple[float, ...]
    abseta_edges: tuple[float, ...]

    @property
    def n_pt(self) -> int:
        """pT bins, overflow included."""
        return len(self.pt_edges)

    @property
    def n_abseta(self) -> int:
        """|eta| bins, overflow included."""
        return len(self.abseta_edges)

    @property
    def n_regions(self) -> int:
        """Number of regions of the grid."""
        return len(self.type_names) * self.n_abseta * self.n_pt

    def region_index(self, type_index: int, abseta_bin: int, pt_bin: int) -> int:
        """Index of one cell of the grid."""
        return (type_index * self.n_abseta + abseta_bin) * self.n_pt + pt_bin

    def split(self, region: int) -> tuple[int, int, int]:
        """(type index, |eta| bin, pT bin) of a region index."""
        rest, pt_bin = divmod(region, self.n_pt)
        type_index, abseta_bin = divmod(rest, self.n_abseta)
        return type_index, abseta_bin, pt_bin

    def type_of(self, regions: np.ndarray) -> np.ndarray:
        """Type index of every region index."""
        return np.asarray(regions) // (self.n_abseta * self.n_pt)

    def name(self, region: int) -> str:
        """The original workflow's name of a region."""
        type_index, abseta_bin, pt_bin = self.split(region)
        return f"{self.type_names[type_index]}_absetabin{abseta_bin}_ptbin{pt_bin}"

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Names of all regions, by index."""
        return tuple(self.name(region) for region in range(self.n_regions))

    def parse_name(self, name: str) -> int:
        """Region index of an original region name."""
        match = _REGION_NAME.match(name)
        if not match or match.group(1) not in self.type_names:
            raise ValueError(f"not a region name of this binning: {name!r}")
        abseta_bin, pt_bin = int(match.group(2)), int(match.group(3))
        if abseta_bin >= self.n_abseta or pt_bin >= self.n_pt:
            raise ValueError(f"not a region name of this binning: {name!r}")
        return self.region_index(self.type_names.index(match.group(1)), abseta_bin, pt_bin)

    def pt_label(self, pt_bin: int) -> str:
        """`[20, 25)` or `>= 100` for a pT bin."""
        return _interval_label(self.pt_edges, pt_bin)

    def abseta_label(self, abseta_bin: int) -> str:
        """`[0, 0.6)` or `>= 2.4` for an |eta| bin."""
        return _interval_label(self.abseta_edges, abseta_bin)


def bin_label(edges: Sequence[float], index: int) -> str:
    """A bin by its lower edge: `20`, or `100+` for the overflow bin."""
    return f"{edges[index]:g}" + ("+" if index == len(edges) - 1 else "")


def _interval_label(edges: tuple[float, ...], index: int) -> str:
    if index == len(edges) - 1:
        return f">= {edges[-1]:g}"
    return f"[{edges[index]:g}, {edges[index + 1]:g})"


@dataclass(frozen=True)
class Selection:
    """Compiled type definitions, region variables and splits; assigns every candidate its
    *cell*: `split * n_regions + region` (the region itself without splits)."""

    space: RegionSpace
    type_expressions: tuple[Expression, ...]
    pt: Expression
    abseta: Expression
    splits: SplitRule = field(default_factory=SplitRule)

    @property
    def expressions(self) -> tuple[Expression, ...]:
        """Every expression: the types' in order, then pT's and |eta|'s, then a split rule."""
        return (*self.type_expressions, self.pt, self.abseta, *self.splits.expressions)

    @property
    def branches(self) -> frozenset[str]:
        """Every branch the selection reads."""
        expressions = frozenset().union(*(e.branches for e in self.expressions))
        return expressions | self.splits.branches

    @property
    def n_cells(self) -> int:
        """Cells a candidate can fall in: every region of every split."""
        return self.splits.n_splits * self.space.n_regions

    def cell_name(self, cell: int) -> str:
        """`jet_absetabin1_ptbin3`, or `train/jet_absetabin1_ptbin3` in a named split."""
        split, region = divmod(cell, self.space.n_regions)
        name = self.splits.names[split]
        return f"{name}/{self.space.name(region)}" if name else self.space.name(region)

    def region_of(self, cells: np.ndarray) -> np.ndarray:
        """Region index of every cell (-1 stays -1)."""
        cells = np.asarray(cells)
        return np.where(cells >= 0, cells % self.space.n_regions, -1)

    def split_of(self, cells: np.ndarray) -> np.ndarray:
        """Split index of every cell (-1 stays -1)."""
        cells = np.asarray(cells)
        return np.where(cells >= 0, cells // self.space.n_regions, -1)

    def check_against(
        self, tree_branches: Mapping[str, bool], sample: Mapping[str, np.ndarray], source: str
    ) -> None:
        """ConfigError naming the key and the expression unless the selection can be
        evaluated on a tree with these branches (name -> one value per candidate?) and on a
        sample of its entries; `source` names that tree in the message."""
        missing_identity = sorted(set(self.splits.identity) - tree_branches.keys())
        if missing_identity:
            raise ConfigError(
                f"plan.split_by: the event identity reads {_branches(missing_identity)} that "
                f"{source} lacks; name the branches that identify an event"
            )
        for expression in self.expressions:
            missing = sorted(expression.branches - tree_branches.keys())
            if missing:
                raise ConfigError(
                    f"{expression.key}: expression {expression.text!r} reads "
                    f"{_branches(missing)} that {source} lacks"
                )
            several = sorted(name for name in expression.branches if not tree_branches[name])
            if several:
                raise ConfigError(
                    f"{expression.key}: expression {expression.text!r} reads "
                    f"{_branches(several)} with several values per candidate in {source}; "
                    "selections need one value per candidate"
                )
        for expression in self.expressions:
            try:
                values = expression.evaluate(sample)
                np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise ConfigError(
                    f"{expression.key}: expression {expression.text!r} is not numeric on "
                    f"{source} ({err})"
                ) from err

    def assign(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Cell of every candidate (int32, -1 for none): its region, in its split.

        Types are tried in their configured order and the first match wins, so
        overlapping user definitions still give every candidate one region.
        """
        n = len(next(iter(arrays.values())))
        type_index = np.full(n, -1, dtype=np.int64)
        for index, expression in enumerate(self.type_expressions):
            matches = np.broadcast_to(expression.evaluate(arrays), (n,))
            type_index[(type_index < 0) & matches] = index
        pt_bin = bin_index(_as_float(self.pt.evaluate(arrays), n), np.asarray(self.space.pt_edges))
        abseta_bin = bin_index(
            _as_float(self.abseta.evaluate(arrays), n), np.asarray(self.space.abseta_edges)
        )
        region = (type_index * self.space.n_abseta + abseta_bin) * self.space.n_pt + pt_bin
        split = self.splits.assign(arrays, n)
        valid = (type_index >= 0) & (pt_bin >= 0) & (abseta_bin >= 0) & (split >= 0)
        return np.where(valid, split * self.space.n_regions + region, -1).astype(np.int32)


def _branches(names: Sequence[str]) -> str:
    quoted = ", ".join(repr(name) for name in names)
    return f"branch {quoted}" if len(names) == 1 else f"branches {quoted}"


def _as_float(values: np.ndarray, n: int) -> np.ndarray:
    # float64 keeps the comparison with the edges identical to ROOT's float -> double promotion
    return np.broadcast_to(np.asarray(values, dtype=np.float64), (n,))


def build_selection(config: ProjectConfig) -> Selection:
    """The selection a configuration defines."""
    if config.binning is None:
        raise ConfigError("no binning configured: pass --pt-abseta-bins or set 'binning'")
    space = RegionSpace(
        type_names=tuple(config.types),
        pt_edges=tuple(float(edge) for edge in config.binning.pt_edges()),
        abseta_edges=tuple(float(edge) for edge in config.binning.abseta_edges()),
    )
    types = tuple(parse_expression(text, f"types.{name}") for name, text in config.types.items())
    return Selection(
        space=space,
        type_expressions=types,
        pt=parse_expression(config.regions.pt, "regions.pt"),
        abseta=parse_expression(config.regions.abseta, "regions.abseta"),
        splits=split_rule(config.plan.splits, config.plan.split_by, config.plan.split_seed),
    )
