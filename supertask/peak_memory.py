"""Peak resident memory of one piece of work inside a long-lived process.

``getrusage``'s ``ru_maxrss`` is the process's high-water mark since it started, so
in a worker that runs many quanta it only ever grows: every quantum after the
largest would be charged with the largest's memory. Linux can reset the mark
(writing ``5`` to ``/proc/self/clear_refs``); `PeakMemory` does that before the work
and reads ``VmHWM`` from ``/proc/self/status`` after it, which is that work's own
peak. Where the reset is not possible it falls back to ``ru_maxrss`` and says so
(`PeakMemory.per_process`): then the value is an upper bound.
"""

from __future__ import annotations

import resource
import sys

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


def _vm_hwm_mb() -> float | None:
    try:
        with open(_STATUS, "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _ru_maxrss_mb() -> float:
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else maxrss / 1024.0  # bytes on macOS


class PeakMemory:
    """Measure the peak resident memory (MB) of what runs between `start` and `stop`."""

    def __init__(self) -> None:
        #: True when the value is the process's high-water mark, not this work's own peak
        self.per_process = False

    def start(self) -> None:
        """Reset the process's high-water mark to its current resident size (Linux)."""
        try:
            with open(_CLEAR_REFS, "w") as f:
                f.write("5")
            self.per_process = _vm_hwm_mb() is None
        except OSError:
            self.per_process = True

    def stop(self) -> float:
        """The peak resident memory in MB since `start` (since the process began if it could not reset)."""
        if not self.per_process:
            value = _vm_hwm_mb()
            if value is not None:
                return value
            self.per_process = True
        return _ru_maxrss_mb()
