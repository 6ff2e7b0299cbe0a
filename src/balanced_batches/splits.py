"""Splits by event: which held-out set (train, validation, test ...) each candidate belongs to.

A split is decided per event, never per candidate, so that all candidates of one event land in
the same split and no event feeds two of them. Two ways are offered:

- fractions (`splits: {train: 0.8, validation: 0.1, test: 0.1}`): every event draws a number
  in [0, 1) from a seeded hash of its identity (`split_by`, by default `run`, `lumi` and `evt`;
  `shuffle.event_draw`) and takes the split whose share of [0, 1) holds it, in the order the
  splits are named. The draw depends on nothing else, so adding files never moves an event.
  Fractions that add up to less than 1 leave the remaining events out of every split.
- a rule (`split_by: "evt % 2 == 0"`, `splits: [train, test]`): events where it holds go to
  the first split, the others to the second (TauMLTools' parity, UPP's modulo).

Without `splits` there is one unnamed split holding every candidate, and nothing changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .expressions import Expression, parse_expression
from .shuffle import event_draw


@dataclass(frozen=True)
class SplitRule:
    """How candidates are put into splits; `assign` gives each one's split index."""

    names: tuple[str, ...] = ("",)
    fractions: tuple[float, ...] = (1.0,)  # with `identity`
    identity: tuple[str, ...] = ()  # branches hashed into the draw; none: everything in split 0
    rule: Expression | None = None  # true: split 0, false: split 1
    seed: int = 0

    @property
    def n_splits(self) -> int:
        """Number of splits (1 without splits)."""
        return len(self.names)

    @property
    def named(self) -> bool:
        """True if the configuration asked for splits (outputs then go to one directory each)."""
        return self.names != ("",)

    @property
    def branches(self) -> frozenset[str]:
        """Branches the assignment reads."""
        return self.rule.branches if self.rule is not None else frozenset(self.identity)

    @property
    def expressions(self) -> tuple[Expression, ...]:
        """The rule, if any (checked against the input files like the selection's)."""
        return () if self.rule is None else (self.rule,)

    def describe(self) -> dict[str, object]:
        """What decides the assignment (part of the counts' fingerprint)."""
        return {
            "names": list(self.names),
            "fractions": list(self.fractions),
            "identity": list(self.identity),
            "rule": None if self.rule is None else self.rule.text,
            "seed": self.seed,
        }

    def assign(self, arrays: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """Split index of each of `n` candidates (int64), -1 for candidates in no split."""
        if self.rule is not None:
            holds = np.broadcast_to(np.asarray(self.rule.evaluate(arrays), dtype=bool), (n,))
            return np.where(holds, 0, 1).astype(np.int64)
        if not self.identity:
            return np.zeros(n, dtype=np.int64)
        draw = event_draw(self.seed, [np.asarray(arrays[name]) for name in self.identity])
        bounds = np.cumsum(self.fractions)
        split = np.searchsorted(bounds, draw, side="right").astype(np.int64)
        split[split >= self.n_splits] = -1  # past the last fraction: held out of every split
        return split


def split_rule(
    splits: Mapping[str, float] | list[str] | None, split_by: list[str] | str, seed: int
) -> SplitRule:
    """The rule a configuration's `plan.splits`, `plan.split_by` and `plan.split_seed` give
    (validated by `config.PlanConfig`)."""
    if splits is None:
        return SplitRule()
    if isinstance(split_by, str):
        return SplitRule(
            names=tuple(splits),
            fractions=(),
            rule=parse_expression(split_by, "plan.split_by"),
        )
    assert isinstance(splits, Mapping)  # names only come with a rule
    return SplitRule(
        names=tuple(splits),
        fractions=tuple(float(f) for f in splits.values()),
        identity=tuple(split_by),
        seed=seed,
    )


_NAMES = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*(\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*\s*$")


def parse_splits(text: str) -> dict[str, float] | list[str]:
    """`--splits`: `train=0.8,validation=0.1,test=0.1`, or `train,test` with a rule."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not any("=" in item for item in items):
        return items
    fractions: dict[str, float] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if name.strip() in fractions:
            raise ConfigError(f"--splits {text!r}: split {name.strip()!r} is named twice")
        try:
            fractions[name.strip()] = float(value) if equals else float("nan")
        except ValueError:
            fractions[name.strip()] = float("nan")
        if fractions[name.strip()] != fractions[name.strip()]:
            raise ConfigError(
                f"--splits {text!r}: {item!r} is not NAME=FRACTION "
                "(e.g. train=0.8,validation=0.1,test=0.1)"
            )
    return fractions


def parse_split_by(text: str) -> list[str] | str:
    """`--split-by`: branch names that identify an event (`run,lumi,evt`), or a rule
    (`evt % 2 == 0`)."""
    if _NAMES.match(text):
        return [name.strip() for name in text.split(",")]
    return text
