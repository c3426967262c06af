"""How time and memory grow with the graph: one table at 10^4, 10^5, 10^6 quanta (issue 17, item 5).

For each size, over the synthetic repository of `synthetic_repo` and the three tasks of
`bench_tasks`, each step runs in a fresh process whose wall-clock time, CPU seconds and
peak RSS are measured (``getrusage(RUSAGE_CHILDREN)`` of a wrapper process):

- **preflight**: ``build_quantum_graph`` over the whole repository (`bench_preflight.py`);
- **save** and **load**: writing the graph file, then reading all of it in another process;
- **prepare HTCondor** and **prepare Pegasus**: ``bps prepare`` of that graph file,
  unclustered (one job per quantum), sites ``htcondor_shared`` and ``pegasus_local``;
- **finalize**: ``bps finalize`` verifying and registering as many staged outputs as the
  graph has quanta (100 per job manifest, set up by `bench_finalize.setup`).

The table gives each figure and its ratio to the size below (a decade). Anything linear
grows about 10x per decade; a ratio above ``--limit`` (default 12) is flagged ``<-- worse than
linear``: a bug to fix. Set-up (repositories, staged files) is not measured. Repositories
are made under ``WORKDIR`` once and reused (``WORKDIR/n<size>/repo``).

The 10^6 row takes about 15 minutes and several GB: run it on an otherwise idle machine
(the script prints the load average before and after each size).

Usage::

    .venv/bin/python benchmarks/bench_scaling.py WORKDIR [--sizes 10000 100000 1000000]
        [--steps preflight save load prepare-htcondor prepare-pegasus finalize]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import synthetic_repo  # noqa: E402
from bench_preflight import machine_note  # noqa: E402

STEPS = ("preflight", "save", "load", "prepare-htcondor", "prepare-pegasus", "finalize")
OUTPUT_RUN = "bench/out"

#: Runs one command and prints its CPU seconds and peak RSS (KiB): a wrapper process per
#: measured command, so that each figure is that command's alone.
_MEASURE = (
    "import json, resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); print(json.dumps([u.ru_utime + u.ru_stime, u.ru_maxrss]))"
)

#: Preflight then save, in one process: each timed on its own (the save's peak RSS is that
#: of the process holding the graph, which is preflight's).
_PREFLIGHT_AND_SAVE = """
import gc, json, resource, sys, time
sys.path.insert(0, {here!r})
import bench_tasks, synthetic_repo
from supertask.graph.builder import build_quantum_graph
from supertask.repo.butler import Butler
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
butler = Butler({repo!r}, collections=[synthetic_repo.INPUT_RUN])
pipeline = bench_tasks.make_pipeline()
gc.collect()
t, c = time.perf_counter(), cpu()
graph, report = build_quantum_graph(pipeline, butler, input_collections=[synthetic_repo.INPUT_RUN],
                                    output_run={run!r}, max_rows=None)
pre = (time.perf_counter() - t, cpu() - c, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
t, c = time.perf_counter(), cpu()
graph.save({graph!r})
save = (time.perf_counter() - t, cpu() - c, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps({{"quanta": len(graph), "preflight": pre, "save": save}}))
"""

_LOAD = """
import json, resource, sys, time
from supertask.graph.quantum_graph import QuantumGraph
u0 = resource.getrusage(resource.RUSAGE_SELF)
t = time.perf_counter()
graph = QuantumGraph.load({graph!r})
u = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps([time.perf_counter() - t, u.ru_utime + u.ru_stime - u0.ru_utime - u0.ru_stime, u.ru_maxrss / 1024,
                  len(graph)]))
"""


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Run ``command`` in a fresh process; its wall seconds, CPU seconds and peak RSS in MB."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    cpu, peak_kib = json.loads(out.stdout)
    return wall, cpu, peak_kib / 1024


def python_json(code: str, env: dict[str, str]):
    """Run Python ``code`` in a fresh process and parse the JSON it prints last."""
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_note() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def run_size(
    n: int, work: Path, steps: list[str], env: dict[str, str]
) -> dict[str, tuple[float, float, float]]:
    """Every step at one size; ``{step: (wall, cpu, rss_mb)}`` plus ``quanta``."""
    here = work / f"n{n}"
    repo, graph = here / "repo", here / "bench.qgraph"
    here.mkdir(parents=True, exist_ok=True)
    if not (repo / "butler.yaml").exists():
        layout = synthetic_repo.layout_for_visits(synthetic_repo.visits_for_quanta(n))
        print(f"  making {repo} ({layout.visits} visits) ...", flush=True)
        synthetic_repo.make_repo(repo, layout).close()
    figures: dict = {}
    if "preflight" in steps or "save" in steps or not graph.exists():
        code = _PREFLIGHT_AND_SAVE.format(here=str(HERE), repo=str(repo), run=OUTPUT_RUN, graph=str(graph))
        result = python_json(code, env)
        figures["quanta"] = result["quanta"]
        figures["preflight"], figures["save"] = tuple(result["preflight"]), tuple(result["save"])
        print(f"  preflight {figures['preflight'][0]:.1f} s, save {figures['save'][0]:.1f} s", flush=True)
    if "load" in steps:
        wall, cpu, rss, quanta = python_json(_LOAD.format(graph=str(graph)), env)
        figures["load"], figures["quanta"] = (wall, cpu, rss), quanta
    bin_dir = Path(sys.executable).parent
    for wms, site in (("htcondor", "htcondor_shared"), ("pegasus", "pegasus_local")):
        if f"prepare-{wms}" not in steps:
            continue
        submit = here / f"submit-{wms}"
        shutil.rmtree(submit, ignore_errors=True)
        config = here / f"bps-{wms}.yaml"
        config.write_text(
            f"repo: {repo}\nqgraph: {graph}\noutput_run: {OUTPUT_RUN}\nwms: {wms}\n"
            f"compute_site: {site}\nsubmit_dir: {submit}\n"
            # The jobs import the benchmark's tasks from here: prepare checks that they can.
            f"site:\n  environment:\n    PYTHONPATH: {HERE}\n"
        )
        figures[f"prepare-{wms}"] = measure([str(bin_dir / "bps"), "prepare", str(config)], env)
        shutil.rmtree(submit, ignore_errors=True)
        print(f"  prepare {wms} {figures[f'prepare-{wms}'][0]:.1f} s", flush=True)
    if "finalize" in steps:
        outputs = figures.get("quanta", n)
        staged = here / "finalize"
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir()
        setup = (
            f"import sys; sys.path.insert(0, {str(HERE)!r}); from pathlib import Path; import bench_finalize; "
            f"print(bench_finalize.setup(Path({str(staged)!r}), {outputs}, 100))"
        )
        submit = subprocess.run(
            [sys.executable, "-c", setup], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        figures["finalize"] = measure(
            [sys.executable, "-c", f"from bps.finalize import finalize; finalize({submit!r})"], env
        )
        shutil.rmtree(staged, ignore_errors=True)
        print(f"  finalize {figures['finalize'][0]:.1f} s", flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workdir", help="repositories and graphs live here (kept for reruns); not under /tmp")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    parser.add_argument("--limit", type=float, default=12.0, help="flag ratios per decade above this")
    parser.add_argument("--json", help="also write all figures to this file")
    args = parser.parse_args(argv)
    work = Path(args.workdir).resolve()
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    )
    print(machine_note())
    results: dict[int, dict] = {}
    for n in sorted(args.sizes):
        print(f"size {n:,} (load average {load_note()})", flush=True)
        results[n] = run_size(n, work, args.steps, env)
        results[n]["load_after"] = load_note()
    if args.json:
        Path(args.json).write_text(json.dumps({str(k): v for k, v in results.items()}, indent=1))
    sizes = sorted(results)
    print()
    print("| step | " + " | ".join(f"{results[n].get('quanta', n):,} quanta" for n in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    worse = []
    for step in args.steps:
        for what, index, unit in (("wall", 0, "s"), ("CPU", 1, "s"), ("peak RSS", 2, "MB")):
            cells = []
            for i, n in enumerate(sizes):
                value = results[n].get(step)
                if value is None:
                    cells.append("–")
                    continue
                text = f"{value[index]:,.0f} {unit}" if unit == "MB" else f"{value[index]:,.2f} {unit}"
                previous = results[sizes[i - 1]].get(step) if i else None
                if previous and previous[index] > 0:
                    ratio = value[index] / previous[index]
                    growth = results[n].get("quanta", n) / results[sizes[i - 1]].get("quanta", sizes[i - 1])
                    per_decade = ratio ** (1 / math.log10(growth)) if growth > 1 else ratio
                    text += f" (×{ratio:.1f})"
                    if what != "wall" and per_decade > args.limit and (unit != "MB" or value[index] > 200):
                        text += " <-- worse than linear"
                        worse.append(f"{step} {what} {sizes[i - 1]:,} -> {n:,}: x{ratio:.1f}")
                cells.append(text)
            print(f"| {step} {what} | " + " | ".join(cells) + " |")
    print()
    print("load average after each size: " + "; ".join(f"{n:,}: {results[n]['load_after']}" for n in sizes))
    if worse:
        print("growing faster than linear (CPU or memory):")
        for line in worse:
            print(f"  {line}")
    print(machine_note().replace("machine:", "after:"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
