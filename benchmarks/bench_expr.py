"""Cost of large data-ID expressions: parsing long IN lists, and queries with huge value lists.

- ``parse``: a literal ``visit IN (0, 1, ..., N-1)`` through the fast list path and through
  lark alone (``fast_lists=False``, the earlier behaviour);
- ``query``: ``queryDataIds`` on a small SQLite registry with ``visit IN (:v)`` bound to a
  list of M values (one JSON parameter), to ``range(M)`` (a range condition), and with
  1,000 ``OR`` equalities (folded into one IN list).

Usage: ``.venv/bin/python benchmarks/bench_expr.py [N] [M]`` (defaults 50000 and 300000).
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    from conftest_repo import populate

    from supertask.expr import parse_expression
    from supertask.repo.registry import Registry

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 300_000
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.processor() or '?'}")
    parse_expression("visit = 1")  # build the parser once
    text = "visit IN (" + ", ".join(str(i) for i in range(n)) + ")"
    print(f"parse {n}-value IN list, fast path: {_best(lambda: parse_expression(text)):.3f} s")
    lark_only = _best(lambda: parse_expression(text, fast_lists=False), repeats=1)
    print(f"parse {n}-value IN list, lark only: {lark_only:.3f} s")
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry.create(f"sqlite:///{tmp}/registry.sqlite3")
        populate(registry, n_visits=200)
        values = list(range(m))
        print(
            f"query, {m}-value bind list: {_best(lambda: registry.queryDataIds(['visit'], 'visit IN (:v)', {'v': values})):.3f} s"
        )
        print(
            f"query, range({m}) bind: {_best(lambda: registry.queryDataIds(['visit'], 'visit IN (:v)', {'v': range(m)})):.3f} s"
        )
        ors = " OR ".join(f"visit = {i}" for i in range(1000))
        print(f"query, 1,000 OR equalities: {_best(lambda: registry.queryDataIds(['visit'], ors)):.3f} s")
        registry.close()


if __name__ == "__main__":
    main()
