"""The collector settings workers run with: frozen long-lived objects, deferred collection."""

from __future__ import annotations

import gc
import weakref

import pytest

from balanced_batches.engines.heap import collection_deferred


class Node:
    """An object that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def a_cycle() -> weakref.ref[Node]:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


def test_a_deferred_block_runs_without_the_collector_and_leaves_no_cycle_behind() -> None:
    assert gc.isenabled()
    with collection_deferred():
        assert not gc.isenabled()
        made_inside = a_cycle()
        assert made_inside() is not None  # unreachable, but not collected yet
    assert gc.isenabled()
    assert made_inside() is None  # collected as the block ended


def test_a_deferred_block_collects_and_restores_the_collector_when_it_fails() -> None:
    with pytest.raises(ValueError), collection_deferred():
        made_inside = a_cycle()
        raise ValueError("the block fails")
    assert gc.isenabled()
    assert made_inside() is None


def test_a_collector_turned_off_before_stays_off() -> None:
    gc.disable()
    try:
        with collection_deferred():
            made_inside = a_cycle()
        assert not gc.isenabled()
        assert made_inside() is None
    finally:
        gc.enable()
