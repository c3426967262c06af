"""Start Parsl's interchange so that it ends with the workflow process that started it.

``python -m bps.wms.parsl.interchange_guard INTERCHANGE [ARGS...]`` asks the kernel to send
it SIGTERM when its parent (the workflow process) dies (``PR_SET_PDEATHSIG``, kept across
``exec``), then becomes the interchange. Without it, a workflow process killed outright
(SIGKILL, an out-of-memory kill) leaves its interchange running, which keeps its worker
pools alive and busy forever; with it the pools lose their interchange and stop after
their ``heartbeat_threshold``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: python -m bps.wms.parsl.interchange_guard INTERCHANGE [ARGS...]")
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before the request: nothing to serve
            sys.exit(1)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
