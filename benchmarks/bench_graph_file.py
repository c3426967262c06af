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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_graph import CONFIGS, PIPELINE_YAML, synthetic_quanta  # noqa: E402

from supertask.graph.quantum_graph import QuantumGraph  # noqa: E402


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def _fresh_process_ms(code: str, repeats: int) -> float:
    """Median wall time of ``python -c code`` in a new interpreter, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


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
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    quanta, t_gen = _timed(synthetic_quanta, args.n)
    graph, t_graph = _timed(QuantumGraph, quanta, pipelineYaml=PIPELINE_YAML, configs=CONFIGS, metadata={})
    n = len(graph)
    print(f"quanta: {n} ({', '.join(f'{k} {v}' for k, v in graph.summary().quantaPerLabel.items())})")
    print(f"generate synthetic quanta: {t_gen:.2f} s; QuantumGraph construction: {t_graph:.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.qgraph"
        _, t_write = _timed(graph.save, path)
        size = path.stat().st_size
        print(f"write: {t_write:.2f} s ({1e6 * t_write / n:.1f} us/quantum)")
        print(f"size: {size / 1e6:.1f} MB, {size / n:.1f} bytes/quantum")

        ids = [0, n // 3, n // 2, n - 1]
        _, t_one = _timed(lambda: [QuantumGraph.loadQuantum(path, i) for i in ids])
        print(f"one quantum, in process (warm cache): {1000 * t_one / len(ids):.2f} ms")

        bare = _fresh_process_ms("pass", args.repeats)
        one = _fresh_process_ms(
            f"from supertask.graph.file_format import read_quantum; read_quantum({str(path)!r}, {n // 2})",
            args.repeats,
        )
        via_graph = _fresh_process_ms(
            "from supertask.graph.quantum_graph import QuantumGraph; "
            f"QuantumGraph.loadQuantum({str(path)!r}, {n // 2})",
            args.repeats,
        )
        print(
            f"one quantum, fresh process: {one:.1f} ms; bare interpreter start-up: {bare:.1f} ms; "
            f"difference: {one - bare:.1f} ms (target < 50 ms); "
            f"through QuantumGraph.loadQuantum: {via_graph - bare:.1f} ms above bare"
        )
        del graph, quanta
        if not args.skip_whole_load:
            loaded, t_load = _timed(QuantumGraph.load, path)
            print(f"whole load: {t_load:.2f} s ({1e6 * t_load / n:.1f} us/quantum), {len(loaded)} quanta")


if __name__ == "__main__":
    main()
