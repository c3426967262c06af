"""Where the workflow process of a Parsl run lives: a small state file in the submit directory.

A Parsl workflow lives in one process (its DataFlowKernel: it holds the futures, submits
blocks to the provider and talks to the workers). ``bps submit`` starts it as
``python -m bps.wms.parsl.driver SUBMIT_DIR`` and it writes ``SUBMIT_DIR/parsl/driver.json``
at once: its host, its process id and the process's start time (so a recycled process id is
never taken for it). ``bps report``, ``bps restart`` and ``bps cancel``, from any shell, read
that file: cancel sends the process SIGTERM (it must run on the same host), restart refuses
while it lives, report calls running jobs of a dead process what they are.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from supertask.atomic_write import atomic_write_text

PARSL_DIR = "parsl"
STATE_FILE = "driver.json"
DRIVER_LOG = "driver.log"


def parsl_dir(submit_dir: Path) -> Path:
    """``SUBMIT_DIR/parsl``: the state file, the workflow process's log, Parsl's run directory."""
    return Path(submit_dir) / PARSL_DIR


def state_path(submit_dir: Path) -> Path:
    return parsl_dir(submit_dir) / STATE_FILE


def write_state(submit_dir: Path, **fields: Any) -> None:
    """Merge ``fields`` into the state file (atomically: a reader never sees half a file)."""
    path = state_path(submit_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = read_state(submit_dir)
    state.update(fields)
    atomic_write_text(path, json.dumps(state, indent=1, sort_keys=True))


def read_state(submit_dir: Path) -> dict[str, Any]:
    """The state file, or ``{}`` when no workflow process was ever started here."""
    try:
        state: dict[str, Any] = json.loads(state_path(submit_dir).read_text())
        return state
    except FileNotFoundError:
        return {}


def this_process() -> dict[str, Any]:
    """What identifies the calling process: host, process id, start time."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start_ticks": process_start_ticks(pid)}


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold blanks: split after it
    rest = stat.rsplit(")", 1)[1].split()
    if rest[0] in ("Z", "X"):  # exited, not yet reaped: not a running process
        return None
    return int(rest[19])


def on_this_host(state: dict[str, Any]) -> bool:
    return state.get("host") == socket.gethostname()


def driver_alive(state: dict[str, Any]) -> bool:
    """True when the state file's workflow process runs on this host now.

    On another host the answer is unknown; callers that must act on the process say so
    (`on_this_host`) rather than guess.
    """
    pid = state.get("pid")
    if not isinstance(pid, int) or not on_this_host(state):
        return False
    ticks = process_start_ticks(pid)
    return ticks is not None and ticks == state.get("start_ticks")
