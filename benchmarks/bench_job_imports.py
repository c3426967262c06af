"""What `bps prepare`'s check of the jobs' imports costs: one subprocess importing the task classes.

Imports the demo pipeline's task classes with the jobs' interpreter and the environment an
HTCondor job gets (`bps.job_environment.check_task_imports`, as prepare does) several times
and prints, per run, the wall time and the CPU time of the subprocess. CPU figures hold on
a loaded machine; wall times do not.

Usage: ``.venv/bin/python benchmarks/bench_job_imports.py [N_RUNS]``
"""

from __future__ import annotations

import resource
import statistics
import sys
import time

from demo_drp.main_job import PIPELINE

from bps.job_environment import check_task_imports, task_classes
from bps.wms.htcondor.translator import job_environment
from bps.workflow import SiteConfig


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    classes = task_classes(PIPELINE.read_text())
    env = job_environment(SiteConfig(name="bench", wms="htcondor"))
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        outcome = check_task_imports(env, classes)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if outcome.error or outcome.warning:
            sys.exit(f"the check did not pass: {outcome.error or outcome.warning}")
    print(f"{len(classes)} task classes, {runs} runs, one subprocess each")
    print(f"wall: median {statistics.median(walls):.2f} s (min {min(walls):.2f}, max {max(walls):.2f})")
    print(
        f"subprocess CPU: median {statistics.median(cpus):.2f} s (min {min(cpus):.2f}, max {max(cpus):.2f})"
    )


if __name__ == "__main__":
    main()
