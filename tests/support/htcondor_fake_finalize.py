#!/usr/bin/env python3
"""A stand-in for ``bps finalize SUBMIT_DIR`` in HTCondor tests.

Moves staged outputs (``<submit_dir>/staged/<lfn>``) into the datastore and writes
``finalized.txt`` listing every output present, as the real final job registers them;
tombstones (outputs of a quantum with no work) are never registered and are deleted,
wherever they are (staged back by file transfer, or at the datastore path).
"""

import sys
from pathlib import Path

from bps.staging import is_tombstone
from bps.workflow import GenericWorkflow

submit_dir = Path(sys.argv[1])
wf = GenericWorkflow.load(submit_dir / "workflow.json")
repo = Path(wf.repo)
present = []
for job in wf.jobs.values():
    for out in job.outputs:
        staged = submit_dir / "staged" / out.lfn
        target = repo / out.path
        tombstones = [p for p in (staged, target) if is_tombstone(p)]
        if tombstones:
            for place in tombstones:
                place.unlink()
            continue
        if staged.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            staged.replace(target)
        if target.exists():
            present.append(out.lfn)
(submit_dir / "finalized.txt").write_text("\n".join(sorted(present)) + "\n")
