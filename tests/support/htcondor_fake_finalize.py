#!/usr/bin/env python3
"""A stand-in for ``bps finalize SUBMIT_DIR`` in HTCondor tests.

Moves staged outputs (``<submit_dir>/staged/<lfn>``) into the datastore and writes
``finalized.txt`` listing every output present, as the real final job registers them;
tombstones (outputs of a quantum with no work) are never registered and are deleted,
wherever they are (staged back by file transfer, or at the datastore path). Exits as the
real one does: OUTPUTS_MISSING when an expected output is neither there nor no-work, else
WORKFLOW_FAILED when ``--dag-status`` / ``--failed-count`` (DAGMan's macros) say so.
"""

import argparse
import sys
from pathlib import Path

from bps import exit_codes
from bps.staging import is_tombstone
from bps.workflow_io import load_workflow

parser = argparse.ArgumentParser()
parser.add_argument("submit_dir")
parser.add_argument("--batch-size")
parser.add_argument("--dag-status", type=int)
parser.add_argument("--failed-count", type=int)
options = parser.parse_args()
submit_dir = Path(options.submit_dir)
wf = load_workflow(submit_dir / "workflow.json")
repo = Path(wf.repo)
present = []
missing = 0
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
        else:
            missing += 1
(submit_dir / "finalized.txt").write_text("\n".join(sorted(present)) + "\n")
if missing:
    sys.exit(exit_codes.OUTPUTS_MISSING)
if options.dag_status or options.failed_count:
    sys.exit(exit_codes.WORKFLOW_FAILED)
