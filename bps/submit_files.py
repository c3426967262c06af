"""How ``bps prepare`` writes the files of a submit directory: atomically, not synced.

The policy, in one place
------------------------
Every file ``bps prepare`` (and a restart's re-preparation) writes into a submit directory
for the workflow system to read -- ``workflow.json``, the HTCondor DAG, its submit files and
DAGMan configuration, the Pegasus documents, catalogs, maps and ``plan.sh`` -- is written
by `submit_file`: to a temporary name beside it, then renamed over it
(`supertask.atomic_write.atomic_open`), so a reader never sees half a file, and **without**
``fsync`` (`SYNC` is False). The input-location and input-check files `bps.prepare` writes
follow the same rule (``fsync=False`` there).

Why not synced
--------------
- They are derived data: all of them are made again from the graph file and the
  configuration by preparing again, and nothing reads them before ``bps submit``. What a
  sync protects against is a power loss or kernel crash in the seconds after the write
  (until the kernel writes the pages back, about 30 s by default); the worst outcome is then
  a file of the new name without its content (never a mix of old and new: the rename is
  still atomic), which ``bps`` refuses with a one-line message to prepare again
  (`bps.workflow_io.load_workflow`); preparing again replaces it.
- The cost is not small: a sync waits until the file is on disk. The Pegasus documents of
  10^6 jobs are about 3 GB; syncing them made the writer wait on the disk for seconds of
  a prepare whose target is a minute (see ``docs/benchmarks.md``, "prep-write").
- What must survive a crash is synced where it is written: the datastore's files and the
  registry, run records and manifests (`supertask.atomic_write` syncs by default).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from supertask.atomic_write import atomic_open

__all__ = ["BUFFER", "SYNC", "submit_file", "write_submit_text"]

#: Whether the files of a submit directory are synced before their rename (see the module docstring).
SYNC = False
#: Write buffer of a submit-directory file: large files go out in 1 MiB writes.
BUFFER = 1 << 20


@contextmanager
def submit_file(path: str | Path) -> Iterator[IO[Any]]:
    """Open ``path`` (text, UTF-8) to be replaced atomically when the block ends, by the policy above."""
    with atomic_open(path, "w", fsync=SYNC, buffering=BUFFER) as out:
        yield out


def write_submit_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` by `submit_file`."""
    with submit_file(path) as out:
        out.write(text)
