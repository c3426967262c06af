"""Read DAGMan's node status file: one ClassAd per node, rewritten every interval.

Written by DAGMan (``NODE_STATUS_FILE name 60``, not ``ALWAYS-UPDATE`` which rewrites
the whole file at every event and slows big DAGs). It is the authority on which node
is done, failed or futile (a descendant of a failure that will never run).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NOT_READY, READY, PRERUN, SUBMITTED, POSTRUN, DONE, ERROR, FUTILE = range(8)


@dataclass(frozen=True)
class NodeStatus:
    node: str
    status: int
    retry_count: int = 0
    held: bool = False


@dataclass
class DagStatus:
    """The file's contents: per node, plus the DAG-level ad (empty when DAGMan has not written it)."""

    nodes: dict[str, NodeStatus]
    dag_status: int | None = None
    finished: bool = False
    #: when DAGMan wrote the file (its ``Timestamp``, epoch seconds), None when absent
    timestamp: float | None = None


def read_node_status(path: str | Path) -> DagStatus:
    """The node status file's ads (``DagStatus({})`` when DAGMan has not written it)."""
    path = Path(path)
    if not path.exists():
        return DagStatus({})
    import classad2

    nodes: dict[str, NodeStatus] = {}
    result = DagStatus(nodes)
    for ad in classad2.parseAds(path.read_text()):
        kind = ad.get("Type")
        if kind == "NodeStatus":
            name = ad["Node"]
            nodes[name] = NodeStatus(
                name, int(ad["NodeStatus"]), int(ad.get("RetryCount", 0)), int(ad.get("JobProcsHeld", 0)) > 0
            )
        elif kind == "DagStatus":
            result.dag_status = int(ad.get("DagStatus", 0))
            if ad.get("Timestamp") is not None:
                result.timestamp = float(ad["Timestamp"])
        elif kind == "StatusEnd":
            result.finished = int(ad.get("NextUpdate", 1)) == 0
    return result
