"""Read the job event log of a DAG (``<dag>.nodes.log``) into a history per node.

Read through ``htcondor2.JobEventLog`` (the schedd's own parser), so a report needs
no schedd: the log stays in the submit directory after the schedd's history has
rolled over (the schedd keeps a bounded history). Each DAGMan attempt of a node is a new cluster; the
submit event's notes tie a cluster to its node. HTCondor 25 writes them structured,
``[ DAGNodeName = "NAME"; JobBatchName = "DAG" ]`` (htcondor2: ``LogNotes`` is that
text, ``StructuredNotes`` the ClassAd); older versions wrote ``DAG Node: NAME``. Both
are read. DAGMan's POST script event names the node itself (``DAGNodeName``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .memory import POOL_POLICIES

#: Legacy test runner text: "... memory limit of 4096 MB".
_LIMIT = re.compile(r"memory limit of (\d+)")
#: A job's own ``periodic_hold`` ("memory usage 3174 MB exceeded request_memory 3000 MB")
#: and SYSTEM_PERIODIC_HOLD reasons written like it, as a real 25.14.0 pool's was
#: ("Job memory usage (3174 MB) exceeded request_memory (3000 MB)").
_USAGE_REQUEST = re.compile(
    r"memory usage \(?(\d+) MB\)? exceeded request_memory \(?(\d+) MB\)?", re.IGNORECASE
)
_STRUCTURED_NAME = re.compile(r'DAGNodeName\s*=\s*"([^"]*)"')

# JobEventType numbers (stable across HTCondor versions)
SUBMIT, EXECUTE, EVICTED, TERMINATED, ABORTED, HELD, RELEASED, POST_SCRIPT = 0, 1, 4, 5, 9, 12, 13, 16

#: (HoldReasonCode, HoldReasonSubCode or None for any) of every memory hold a pool policy
#: may use: 34 (cgroups), 3/34 (the job's own ``periodic_hold``), 26/34
#: (``SYSTEM_PERIODIC_HOLD``), 21/102 (``HOLD_IF_MEMORY_EXCEEDED``); see `memory.POOL_POLICIES`.
MEMORY_HOLDS: tuple[tuple[int, int | None], ...] = POOL_POLICIES["any"]


def is_memory_hold(code: int | None, subcode: int | None) -> bool:
    """Whether a hold with these codes means the job used more memory than it requested."""
    return code is not None and any(code == c and (s is None or subcode == s) for c, s in MEMORY_HOLDS)


@dataclass
class NodeHistory:
    """What the event log says about one node, over all its attempts (clusters)."""

    node: str
    clusters: list[int] = field(default_factory=list)
    state: str = "idle"  # idle | running | held | exited | removed
    exit_code: int | None = None
    hold_reason: str | None = None
    hold_code: int | None = None
    hold_subcode: int | None = None
    last_hold_reason: str | None = None
    last_hold_code: int | None = None
    last_hold_subcode: int | None = None
    #: why the last attempt was removed (the aborted event's reason)
    remove_reason: str | None = None
    #: the POST script's exit for the last attempt (None: no POST script ran yet)
    post_result: int | None = None
    request_memory_mb: int = 0
    memory_usage_mb: int = 0
    #: whether the last attempt ended in a memory hold (held now, or removed while so held)
    memory_exceeded: bool = False
    #: local time (epoch seconds) of the node's last event
    last_event_time: float = 0.0
    #: when the current cluster first started executing, and when its last execution
    #: ended (terminated or removed); None until then. For the report's timeline.
    started: float | None = None
    ended: float | None = None

    #: executions over all clusters (a job retried inside its cluster, ``max_retries``, or
    #: released after a hold, starts again in the same cluster)
    starts: int = 0

    @property
    def attempts(self) -> int:
        """Jobs DAGMan submitted for the node (one cluster each)."""
        return len(self.clusters)

    @property
    def runs(self) -> int:
        """Times the node's jobs started: DAGMan's attempts and the retries inside each job."""
        return max(len(self.clusters), self.starts)

    @property
    def memory_grown_to_mb(self) -> int:
        """The largest request this node reached: from termination records and memory-hold reasons."""
        limit = 0
        if self.last_hold_reason and (m := _LIMIT.search(self.last_hold_reason)):
            limit = int(m.group(1))
        return max(self.request_memory_mb, limit)

    @property
    def hold_codes(self) -> str:
        """``code 3 / subcode 34`` of the current (else last) hold, or ``""``."""
        code = self.hold_code if self.hold_code is not None else self.last_hold_code
        sub = self.hold_subcode if self.hold_code is not None else self.last_hold_subcode
        return "" if code is None else f"code {code} / subcode {sub or 0}"


def node_name(event: Any) -> str | None:
    """The DAG node a submit (or POST script) event belongs to, or None for a job outside a DAG."""
    name = event.get("DAGNodeName")
    if name:
        return str(name)
    structured = event.get("StructuredNotes")
    if structured is not None:
        try:
            value = structured.get("DAGNodeName")
        except AttributeError:
            value = None
        if value:
            return str(value)
    notes = str(event.get("LogNotes", "") or "")
    if m := _STRUCTURED_NAME.search(notes):
        return m.group(1)
    if "DAG Node:" in notes:
        return notes.split("DAG Node:", 1)[1].strip().split()[0]
    return None


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
            name = node_name(event) or f"cluster{event.cluster}"
            hist = nodes.setdefault(name, NodeHistory(name))
            hist.clusters.append(event.cluster)
            hist.state, hist.exit_code, hist.post_result = "idle", None, None
            hist.hold_reason, hist.hold_code, hist.hold_subcode = None, None, None
            hist.remove_reason, hist.memory_exceeded = None, False
            hist.last_event_time = _event_time(event)
            hist.started = hist.ended = None
            by_cluster[event.cluster] = hist
            continue
        found = by_cluster.get(event.cluster)
        if found is None:
            continue
        hist = found
        hist.last_event_time = _event_time(event)
        if code == EXECUTE and hist.started is None:
            hist.started = hist.last_event_time
        elif code in (TERMINATED, ABORTED):
            hist.ended = hist.last_event_time
        _apply(hist, code, event)
    return nodes


def _apply(hist: NodeHistory, code: int, event: Any) -> None:
    if code == EXECUTE:
        hist.state = "running"
        hist.starts += 1
        hist.memory_exceeded = False
        props = event.get("ExecuteProps")
        memory = props.get("Memory") if props is not None and hasattr(props, "get") else None
        if isinstance(memory, int):
            # The slot's memory is what this attempt was matched with (its request, rounded up).
            hist.request_memory_mb = max(hist.request_memory_mb, memory)
    elif code == HELD:
        hist.state = "held"
        hist.hold_reason = str(event.get("HoldReason", "") or "")
        hist.hold_code = _int(event.get("HoldReasonCode"))
        hist.hold_subcode = _int(event.get("HoldReasonSubCode"))
        hist.last_hold_reason = hist.hold_reason
        hist.last_hold_code, hist.last_hold_subcode = hist.hold_code, hist.hold_subcode
        hist.memory_exceeded = is_memory_hold(hist.hold_code, hist.hold_subcode)
        if m := _USAGE_REQUEST.search(hist.hold_reason):
            hist.memory_usage_mb = max(hist.memory_usage_mb, int(m.group(1)))
            hist.request_memory_mb = max(hist.request_memory_mb, int(m.group(2)))
    elif code == EVICTED:
        # Back in the queue: evicted, or exited and requeued for a retry (``max_retries``).
        hist.state = "idle"
        if event.get("TerminatedAndRequeued", False):
            if event.get("TerminatedNormally", True):
                hist.exit_code = _int(event.get("ReturnValue"))
            else:
                hist.exit_code = -int(event.get("TerminatedBySignal", 0) or 0)
    elif code == RELEASED:
        hist.state, hist.hold_reason, hist.hold_code, hist.hold_subcode = "idle", None, None, None
        hist.memory_exceeded = False
    elif code == ABORTED:
        hist.state = "removed"
        hist.remove_reason = str(event.get("Reason", "") or "") or None
    elif code == TERMINATED:
        hist.state = "exited"
        if event.get("TerminatedNormally", True):
            hist.exit_code = int(event.get("ReturnValue", 0))
        else:
            hist.exit_code = -int(event.get("TerminatedBySignal", 0))
        hist.request_memory_mb = max(hist.request_memory_mb, int(event.get("RequestMemory", 0) or 0))
        hist.memory_usage_mb = max(hist.memory_usage_mb, int(event.get("MemoryUsage", 0) or 0))
    elif code == POST_SCRIPT:
        hist.post_result = int(event.get("ReturnValue", 0)) if event.get("TerminatedNormally", True) else -1


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _event_time(event: Any) -> float:
    """Event time as epoch seconds (event logs record the submit host's local time)."""
    text = event.get("EventTime", "")
    try:
        return time.mktime(time.strptime(str(text)[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0.0
