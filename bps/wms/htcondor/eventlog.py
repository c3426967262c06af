"""Read the job event log of a DAG (``<dag>.nodes.log``) into a history per node.

Read through ``htcondor2.JobEventLog`` (the schedd's own parser), so a report needs
no schedd: the log stays in the submit directory after the schedd's history has
rolled over (field note 11). Each DAGMan attempt of a node is a new cluster; the
submit event's note ``DAG Node: NAME`` ties a cluster to its node.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

_LIMIT = re.compile(r"memory limit of (\d+)")

# JobEventType numbers (stable across HTCondor versions)
SUBMIT, EXECUTE, ABORTED, TERMINATED, HELD, RELEASED = 0, 1, 9, 5, 12, 13


@dataclass
class NodeHistory:
    """What the event log says about one node, over all its attempts (clusters)."""

    node: str
    clusters: list[int] = field(default_factory=list)
    state: str = "idle"  # idle | running | held | exited | removed
    exit_code: int | None = None
    hold_reason: str | None = None
    hold_code: int | None = None
    last_hold_reason: str | None = None
    request_memory_mb: int = 0
    memory_usage_mb: int = 0
    #: local time (epoch seconds) of the node's last event
    last_event_time: float = 0.0

    @property
    def attempts(self) -> int:
        return len(self.clusters)

    @property
    def memory_grown_to_mb(self) -> int:
        """The largest request this node reached: from termination records and memory-hold limits."""
        limit = 0
        if self.last_hold_reason and (m := _LIMIT.search(self.last_hold_reason)):
            limit = int(m.group(1))
        return max(self.request_memory_mb, limit)


def read_event_log(path: str | Path) -> dict[str, NodeHistory]:
    """Node name -> history; an absent log (nothing submitted yet) gives an empty dict."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return {}
    import htcondor2  # only when there is a log to read

    by_cluster: dict[int, NodeHistory] = {}
    nodes: dict[str, NodeHistory] = {}
    for event in htcondor2.JobEventLog(str(path)).events(stop_after=0):
        code = int(event.type)
        if code == SUBMIT:
            notes = event.get("LogNotes", "") or ""
            name = (
                notes.split("DAG Node:", 1)[1].strip() if "DAG Node:" in notes else f"cluster{event.cluster}"
            )
            hist = nodes.setdefault(name, NodeHistory(name))
            hist.clusters.append(event.cluster)
            hist.state, hist.exit_code, hist.hold_reason, hist.hold_code = "idle", None, None, None
            hist.last_event_time = _event_time(event)
            by_cluster[event.cluster] = hist
            continue
        hist = by_cluster.get(event.cluster)
        if hist is None:
            continue
        hist.last_event_time = _event_time(event)
        if code == EXECUTE:
            hist.state = "running"
        elif code == HELD:
            hist.state = "held"
            hist.hold_reason = event.get("HoldReason", "")
            hist.last_hold_reason = hist.hold_reason
            hist.hold_code = event.get("HoldReasonCode")
        elif code == RELEASED:
            hist.state, hist.hold_reason = "idle", None
        elif code == ABORTED:
            hist.state = "removed"
        elif code == TERMINATED:
            hist.state = "exited"
            if event.get("TerminatedNormally", True):
                hist.exit_code = int(event.get("ReturnValue", 0))
            else:
                hist.exit_code = -int(event.get("TerminatedBySignal", 0))
            hist.request_memory_mb = max(hist.request_memory_mb, int(event.get("RequestMemory", 0) or 0))
            hist.memory_usage_mb = max(hist.memory_usage_mb, int(event.get("MemoryUsage", 0) or 0))
    return nodes


def _event_time(event: object) -> float:
    """Event time as epoch seconds (event logs record the submit host's local time)."""
    text = event.get("EventTime", "")  # type: ignore[attr-defined]
    try:
        return time.mktime(time.strptime(str(text)[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0.0
