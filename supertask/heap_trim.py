"""Give the C heap's free memory back to the system before a step that allocates a lot.

Why
---
Memory that Python frees goes back to the C allocator, which returns it to the system
only when it lies at the top of the heap (or in a separately mapped block). Whether the
hundreds of megabytes preflight frees once its quanta are defined (the dataset indexes,
the planning sets, the look-up tables) are returned before the `QuantumGraph` links them
therefore depends on where the last blocks of the heap happen to be: at 10^6 quanta the
peak RSS was 1,444 MB in some runs and 1,496 MB in others of the same commit, against a
limit of 1,500 MB. glibc's ``malloc_trim`` returns every free page, wherever it lies, so
the peak no longer depends on that. Elsewhere (no glibc) `trim_heap` does nothing.
"""

from __future__ import annotations

__all__ = ["trim_heap"]


def trim_heap() -> bool:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim(0)``).

    Returns
    -------
    trimmed : `bool`
        Whether anything was returned (`False` also where there is no ``malloc_trim``).
    """
    import ctypes  # (here: a batch job that never plans does not pay for importing it)

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))
