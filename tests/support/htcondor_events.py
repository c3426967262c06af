"""Write HTCondor job event log entries in the classic text format (test support).

The runner writes what a schedd would, so that ``bps report`` is tested through the
real ``htcondor2.JobEventLog`` parser, not through a format of our own.
"""

from __future__ import annotations

import time
from pathlib import Path

_USAGE = (
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Remote Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Remote Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Local Usage\n"
    "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n"
    "\t0  -  Total Bytes Sent By Job\n\t0  -  Total Bytes Received By Job\n"
)


class EventLogWriter:
    """Appends events for jobs ``(cluster, 0)`` to one job event log."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _write(self, code: int, cluster: int, text: str, body: str = "") -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self.path.open("a") as f:
            f.write(f"{code:03d} ({cluster:03d}.000.000) {stamp} {text}\n{body}...\n")

    def submit(self, cluster: int, node: str, batch_name: str = "") -> None:
        """The submit event as HTCondor 25.x writes it for a DAG node: structured notes."""
        notes = f'    [ DAGNodeName = "{node}"; JobBatchName = "{batch_name}" ]\n'
        self._write(0, cluster, "Job submitted from host: <127.0.0.1:9618>", notes)

    def execute(self, cluster: int, memory_mb: int | None = None) -> None:
        body = "\tSlotName: slot1_1@vm\n" + (f"\tMemory = {memory_mb}\n" if memory_mb is not None else "")
        self._write(1, cluster, "Job executing on host: <127.0.0.1:9618>", body)

    def evicted(
        self,
        cluster: int,
        code: int,
        subcode: int,
        reason: str,
        *,
        memory_usage: int = 0,
        request_memory: int = 0,
    ) -> None:
        """Eviction by a startd policy (e.g. ``HOLD_IF_MEMORY_EXCEEDED``: code 21, subcode 102)."""
        body = (
            "\t(0) CPU times\n"
            "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Remote Usage\n"
            "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n"
            "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n"
            f"\tReason: {reason}\n"
            "\tPartitionable Resources :    Usage  Request Allocated \n"
            f"\t   Memory (MB)          : {memory_usage:>8} {request_memory:>8} {request_memory:>9} \n"
        )
        self._write(4, cluster, f"Job was evicted. Code {code} Subcode {subcode}", body)

    def requeued(self, cluster: int, *, return_value: int | None = None, signal: int | None = None) -> None:
        """An attempt that ended while ``max_retries`` keeps the job: the schedd's evicted event."""
        if signal is not None:
            ended = f"\t(0) Abnormal termination (signal {signal})\n\t(0) No core file\n"
        else:
            ended = f"\t(1) Normal termination (return value {return_value})\n"
        body = (
            "\t(0) Job terminated and was requeued\n"
            "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Remote Usage\n"
            "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n"
            "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n" + ended
        )
        self._write(4, cluster, "Job was evicted.", body)

    def held(self, cluster: int, reason: str, code: int, subcode: int = 0) -> None:
        self._write(12, cluster, "Job was held.", f"\t{reason}\n\tCode {code} Subcode {subcode}\n")

    def released(self, cluster: int, reason: str) -> None:
        self._write(13, cluster, "Job was released.", f"\t{reason}\n")

    def aborted(self, cluster: int, reason: str) -> None:
        self._write(9, cluster, "Job was aborted.", f"\t{reason}\n")

    def terminated(
        self,
        cluster: int,
        *,
        return_value: int | None = None,
        signal: int | None = None,
        memory_usage: int = 0,
        request_memory: int = 0,
        request_cpus: int = 1,
    ) -> None:
        if signal is not None:
            head = f"\t(0) Abnormal termination (signal {signal})\n\t(0) No core file\n"
        else:
            head = f"\t(1) Normal termination (return value {return_value})\n"
        resources = (
            "\tPartitionable Resources :    Usage  Request Allocated\n"
            f"\t   Cpus                 :             {request_cpus:>5} {request_cpus:>9}\n"
            f"\t   Disk (KB)            :        1 {1024:>8} {1024:>9}\n"
            f"\t   Memory (MB)          : {memory_usage:>8} {request_memory:>8} {request_memory:>9}\n"
        )
        self._write(5, cluster, "Job terminated.", head + _USAGE + resources)
