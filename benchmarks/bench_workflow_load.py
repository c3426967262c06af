"""What ``bps report``, ``status`` and ``restart`` pay first: loading a submit directory's ``workflow.json``.

Each repeat loads the file (`bps.workflow_io.load_workflow`) in a fresh process and prints
the CPU seconds of the load alone (best of the repeats), the process's peak RSS (imports
included: a few tens of MB, the same before and after a change) and the file's size. To
compare two commits, run the earlier one with its tree on ``PYTHONPATH`` (``git archive``)
over the file it wrote::

    .venv/bin/python benchmarks/bench_workflow_load.py SUBMIT_DIR/workflow.json [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

_LOAD = (
    "import json, resource, sys, time; from bps.workflow_io import load_workflow; "
    "start = time.process_time(); wf = load_workflow(sys.argv[1]); cpu = time.process_time() - start; "
    "print(json.dumps([cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(wf.jobs)]))"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workflow", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.workflow.is_file():
        print(f"bench_workflow_load: {args.workflow} is not a file: pass a submit directory's workflow.json")
        return 2
    size = args.workflow.stat().st_size
    runs = []
    for _ in range(args.repeat):
        out = subprocess.run(
            [sys.executable, "-c", _LOAD, str(args.workflow)],
            check=True,
            capture_output=True,
            env=dict(os.environ),
        )
        runs.append(json.loads(out.stdout))
    cpu = min(r[0] for r in runs)
    peak = max(r[1] for r in runs) / 1024
    print(
        f"load_workflow: {runs[0][2]:,} jobs, {size / 2**20:,.1f} MiB: best {cpu:.2f} s CPU of {args.repeat}, "
        f"peak RSS {peak:,.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
