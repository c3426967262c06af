"""Where a batch job's import time goes: ``run_quantum`` under ``python -X importtime``.

Runs the job of `bench_run_quantum` (one trivial quantum, fresh process) several times
with ``-X importtime`` and prints, as medians over the runs, the self time of imports
grouped by the module the job code imported directly (its "top-level" import, so
``yaml`` includes ``yaml.reader``) and the slowest single modules. Used to decide what
to make lazy next; import times on a loaded machine vary by 2x, so compare figures
from one run of this script, never across runs.

Usage: ``.venv/bin/python benchmarks/bench_import.py [N_RUNS]``
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_run_quantum import setup  # noqa: E402

_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def parse(stderr: str) -> tuple[dict[str, int], dict[str, int]]:
    """Self microseconds per top-level import (with everything under it) and per module."""
    groups: dict[str, int] = defaultdict(int)
    modules: dict[str, int] = {}
    # importtime prints children before their parent: attribute each line to the next depth-0 line
    pending: list[tuple[str, int]] = []
    for match in _LINE.finditer(stderr):
        self_us, depth, name = int(match.group(1)), len(match.group(3)) // 2, match.group(4)
        modules[name] = self_us
        pending.append((name, self_us))
        if depth == 0:
            groups[name] += sum(us for _, us in pending)
            pending.clear()
    return groups, modules


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo, graph, env = setup(work, 100)
        group_runs: dict[str, list[int]] = defaultdict(list)
        module_runs: dict[str, list[int]] = defaultdict(list)
        totals = []
        for i in range(runs):
            command = [sys.executable, "-X", "importtime", "-m", "bps.run_quantum", "--graph", str(graph)]
            command += ["--quantum", str(i % 3), "--repo", str(repo), "--job", f"j{i}"]
            command += ["--manifest-dir", str(work / f"m{i}")]
            stderr = subprocess.run(command, check=True, env=env, capture_output=True, text=True).stderr
            groups, modules = parse(stderr)
            totals.append(sum(modules.values()))
            for name, us in groups.items():
                group_runs[name].append(us)
            for name, us in modules.items():
                module_runs[name].append(us)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{runs} runs of run_quantum -X importtime; medians in ms")
    print(f"all imports (self times summed): {statistics.median(totals) / 1000:6.1f}")
    print("by top-level import (including everything it pulled in):")
    ranked = sorted(group_runs.items(), key=lambda kv: -statistics.median(kv[1]))
    for name, values in ranked[:20]:
        print(f"  {statistics.median(values) / 1000:6.1f}  {name}")
    print("slowest single modules (self time):")
    ranked = sorted(module_runs.items(), key=lambda kv: -statistics.median(kv[1]))
    for name, values in ranked[:15]:
        print(f"  {statistics.median(values) / 1000:6.1f}  {name}")
    for name in ("pydantic", "annotated_types", "numpy", "sqlalchemy"):
        print(f"{name} imported: {name in module_runs}")


if __name__ == "__main__":
    main()
