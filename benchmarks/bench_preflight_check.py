"""Check that the optimised preflight plans exactly what the lead's original builder planned.

The builder and ``defineQuanta`` (`supertask.graph.builder`, `supertask.graph.quanta`)
were optimised for the preflight benchmark under one rule: same graph, same order, same
pruning and expansion reports, same datasets added to the RepoGraph. This script
extracts the original two modules from git (commit ``ORIGINAL``), builds both on one
synthetic repository for several expressions, with and without input expansion, and
compares everything. It prints one line per case and exits non-zero on a difference.

Usage::

    .venv/bin/python benchmarks/bench_preflight_check.py [--visits 60] [--original COMMIT]
        [--db sqlite|postgresql] [--db-url URL]

``--db postgresql`` puts the repository's registry in a fresh schema of the PostgreSQL
server of ``--db-url`` (default ``SUPERTASK_TEST_POSTGRES_URL``): the same graphs must
come out of its query shape.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_tasks  # noqa: E402
import synthetic_repo  # noqa: E402

import supertask.graph.quanta as current_quanta  # noqa: E402
from supertask.graph.builder import BuildReport, QuantumGraphBuilder  # noqa: E402
from supertask.repo.repograph import makeRepoGraph  # noqa: E402

#: the lead's commit that introduced the builder, before any optimisation
ORIGINAL = "4a71170"
WHERES = (None, "visit < 10", "tract = 0 AND patch = 3", "band = 'g' AND visit > 20")
IMPORTS = {
    "from ..repo": "from supertask.repo",
    "from ..quantum ": "from supertask.quantum ",
    "from ..supertask ": "from supertask.supertask ",
    "from ..pipeline ": "from supertask.pipeline ",
    "from .quantum_graph ": "from supertask.graph.quantum_graph ",
    "from .quanta ": "from original_graph.quanta ",
}


def extract_original(commit: str, into: Path) -> None:
    """Write the original builder and quanta modules as package ``original_graph`` under ``into``."""
    package = into / "original_graph"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("builder", "quanta"):
        text = subprocess.run(
            ["git", "show", f"{commit}:supertask/graph/{name}.py"],
            cwd=HERE.parent,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for old, new in IMPORTS.items():
            text = text.replace(old, new)
        (package / f"{name}.py").write_text(text)


def summary(graph: Any) -> list[tuple]:
    """Everything a graph says about its quanta, in its order."""
    return [
        (
            q.taskLabel,
            q.dataId,
            tuple((k, tuple(d.dataId for d in v)) for k, v in sorted(q.inputs.items())),
            tuple((k, tuple(d.dataId for d in v)) for k, v in sorted(q.outputs.items())),
        )
        for q in graph
    ]


def plan(builder_class: Any, report_class: Any, quanta_module: Any, butler: Any, where: Any, expand: bool):
    """Build one graph with the given builder, with ``defineQuanta`` routed to ``quanta_module``."""
    saved = current_quanta.define_quanta_by_units
    current_quanta.define_quanta_by_units = quanta_module.define_quanta_by_units
    try:
        builder = builder_class(bench_tasks.make_pipeline(), butler, expand_inputs=expand)
        repo_graph = makeRepoGraph(butler, builder.inputDatasetTypes, builder.outputDatasetTypes, where)
        report = report_class()
        graph = builder.makeGraph(repo_graph, report=report)
    finally:
        current_quanta.define_quanta_by_units = saved
    pruned = {label: (r.count, r.examples) for label, r in report.pruned.items()}
    added = {name: len(datasets) for name, datasets in repo_graph.datasets.items()}
    return summary(graph), pruned, report.expanded, added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visits", type=int, default=60, help="visits in the synthetic repository")
    parser.add_argument("--original", default=ORIGINAL, help="git commit of the original modules")
    parser.add_argument("--db", default="sqlite", choices=("sqlite", "postgresql"), help="registry backend")
    parser.add_argument("--db-url", help="PostgreSQL server URL (default $SUPERTASK_TEST_POSTGRES_URL)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="preflight_check_"))
    extract_original(args.original, work)
    sys.path.insert(0, str(work))
    import original_graph.builder as original_builder
    import original_graph.quanta as original_quanta

    db_url = synthetic_repo.database_url(args.db, args.db_url)
    butler = synthetic_repo.make_repo(
        work / "repo", synthetic_repo.layout_for_visits(args.visits), db_url=db_url
    )
    failures = 0
    for where in WHERES:
        for expand in (True, False):
            old = plan(
                original_builder.QuantumGraphBuilder,
                original_builder.BuildReport,
                original_quanta,
                butler,
                where,
                expand,
            )
            new = plan(QuantumGraphBuilder, BuildReport, current_quanta, butler, where, expand)
            same = old == new
            failures += not same
            print(f"where={where!r} expand_inputs={expand}: {len(new[0])} quanta, identical: {same}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
