"""Benchmark the .qgraph file: size per quantum, write, whole load, and one-quantum load.

Targets (docs/graph-file.md): at most 300 bytes per quantum; writing 10^6 quanta in
< 30 s; loading one quantum of a 10^6-quanta file in a fresh process < 50 ms above the
interpreter's bare start-up (``python -c pass``), which is what every batch job pays.

Usage::

    .venv/bin/python benchmarks/bench_graph_file.py --n 100000
    .venv/bin/python benchmarks/bench_graph_file.py --n 1000000 --keep /tmp/big.qgraph
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_graph import CONFIGS, PIPELINE_YAML, synthetic_quanta  # noqa: E402

from supertask.graph.quantum_graph import QuantumGraph  # noqa: E402


class _Clock:
    """Wall and CPU seconds of a step: on a shared machine the CPU time is the steadier figure."""

    def __init__(self, fn, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        self.result = fn(*args, **kwargs)
        self.wall = time.perf_counter() - wall
        self.cpu = time.process_time() - cpu

    def __str__(self) -> str:
        return f"{self.wall:.2f} s wall, {self.cpu:.2f} s CPU"


def _fresh_process_ms(code: str, repeats: int) -> tuple[float, float]:
    """Median wall and CPU (user + system) milliseconds of ``python -c code`` in a new interpreter."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return 1000 * statistics.median(walls), 1000 * statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="number of quanta (default 20000)")
    parser.add_argument("--repeats", type=int, default=9, help="fresh-process repeats (median is reported)")
    parser.add_argument("--keep", type=Path, help="write the graph here and keep it")
    parser.add_argument("--skip-whole-load", action="store_true", help="do not time loading the whole graph")
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    gen = _Clock(synthetic_quanta, args.n)
    build = _Clock(QuantumGraph, gen.result, pipelineYaml=PIPELINE_YAML, configs=CONFIGS, metadata={})
    graph = build.result
    n = len(graph)
    print(f"quanta: {n} ({', '.join(f'{k} {v}' for k, v in graph.summary().quantaPerLabel.items())})")
    print(f"generate synthetic quanta: {gen}; QuantumGraph construction: {build}")

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.qgraph"
        write = _Clock(graph.save, path)
        size = path.stat().st_size
        print(f"write: {write} ({1e6 * write.cpu / n:.1f} us CPU/quantum)")
        print(f"size: {size / 1e6:.1f} MB, {size / n:.1f} bytes/quantum")

        ids = [0, n // 3, n // 2, n - 1]
        one = _Clock(lambda: [QuantumGraph.loadQuantum(path, i) for i in ids])
        print(f"one quantum, in process (warm cache): {1000 * one.wall / len(ids):.2f} ms")

        bare = _fresh_process_ms("pass", args.repeats)
        direct = _fresh_process_ms(
            f"from supertask.graph.file_format import read_quantum; read_quantum({str(path)!r}, {n // 2})",
            args.repeats,
        )
        via_graph = _fresh_process_ms(
            "from supertask.graph.quantum_graph import QuantumGraph; "
            f"QuantumGraph.loadQuantum({str(path)!r}, {n // 2})",
            args.repeats,
        )
        print(f"bare interpreter start-up: {bare[0]:.1f} ms wall, {bare[1]:.1f} ms CPU")
        for name, (wall, cpu) in (
            ("file_format.read_quantum", direct),
            ("QuantumGraph.loadQuantum", via_graph),
        ):
            print(
                f"one quantum in a fresh process via {name}: {wall - bare[0]:.1f} ms wall, "
                f"{cpu - bare[1]:.1f} ms CPU above bare start-up (target < 50 ms)"
            )
        del graph, gen, build
        if not args.skip_whole_load:
            loaded = _Clock(QuantumGraph.load, path)
            print(
                f"whole load: {loaded} ({1e6 * loaded.cpu / n:.1f} us CPU/quantum), {len(loaded.result)} quanta"
            )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
