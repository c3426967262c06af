"""Pause Python's cyclic garbage collector while millions of long-lived objects are built.

Why
---
Preflight, graph loading and workflow translation each allocate millions of small
objects (data IDs, datasets, quanta, jobs) that all stay alive. Left running, the
collector makes repeated passes over the growing heap and frees nothing: 15-20 % of the
CPU time of a 10^5-quantum preflight. Pausing it is not enough on its own: when it is
re-enabled, every object allocated in the pause is still in the youngest generation,
so the first collection afterwards walks all of them at once (about 7 s after a
10^6-quantum preflight). `gc_paused` therefore promotes the survivors to the oldest
generation when the pause ends (``gc.freeze()`` then ``gc.unfreeze()``, the documented way
to move every tracked object there), which is what repeated collections would have done
anyway, without the walk. Garbage cycles made during the pause are still found, by the
next full collection.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block; promote what it allocated; restore the state.

    Nests: an inner pause leaves the collector disabled for the outer one.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()
