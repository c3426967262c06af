"""gc_paused: no collections during the pause, survivors promoted, garbage still found."""

from __future__ import annotations

import gc
import weakref

from supertask.gc_pause import gc_paused


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_objects_made_in_a_pause_are_promoted_to_the_oldest_generation():
    gc.enable()
    with gc_paused():
        assert not gc.isenabled()
        kept = [Node() for _ in range(1000)]
    assert gc.isenabled()
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    youngest = {id(o) for o in gc.get_objects(generation=0)}
    assert all(id(node) in oldest for node in kept)
    assert not any(id(node) in youngest for node in kept)


def test_garbage_cycles_made_in_a_pause_are_still_collected():
    with gc_paused():
        a, b = Node(), Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
    assert alive() is not None  # a cycle: reference counting alone cannot free it
    gc.collect()
    assert alive() is None


def test_a_nested_pause_leaves_the_collector_disabled_for_the_outer_one():
    gc.enable()
    with gc_paused():
        with gc_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled():
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
