"""Reading the DAGs and submit files that ``pegasus-plan`` writes, to check what the planner emitted.

``workflow.yml`` is planned into a DAG whose node ``pegasus-plan_<id>`` runs the compute
sub-workflow: its PRE script plans ``compute.yml`` into a DAG of its own, and the node ends
when that DAG has ended. `check_plan` checks, on such a pair of DAGs and the final job's
submit file, what the batch system relies on: every ``stage_out_*`` job is an ancestor of
the final job, and the final job makes Pegasus bring no file into its sandbox but its own
tools.
"""

from __future__ import annotations

import re
from pathlib import Path

FINAL_NODE = "bps_finalize"
SUBWORKFLOW_PREFIX = "pegasus-plan_"
#: What PegasusLite itself brings into a job's sandbox (its worker package and shell library).
PEGASUS_OWN_INPUTS = re.compile(r"^(pegasus-worker-.*\.tar\.gz|pegasus-lite-common\.sh)$")


def dag_nodes(dag_text: str) -> list[str]:
    return [line.split()[1] for line in dag_text.splitlines() if line.startswith("JOB ")]


def dag_parents(dag_text: str) -> dict[str, set[str]]:
    """``PARENT a b CHILD c d`` lines -> child: its parents."""
    parents: dict[str, set[str]] = {}
    for line in dag_text.splitlines():
        words = line.split()
        if words[:1] == ["PARENT"]:
            split = words.index("CHILD")
            for child in words[split + 1 :]:
                parents.setdefault(child, set()).update(words[1:split])
    return parents


def ancestors(parents: dict[str, set[str]], node: str) -> set[str]:
    seen: set[str] = set()
    todo = [node]
    while todo:
        for parent in parents.get(todo.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def node_retry(dag_text: str, node: str) -> int | None:
    match = re.search(rf"^RETRY {re.escape(node)} (\d+)", dag_text, flags=re.MULTILINE)
    return int(match.group(1)) if match else None


def transfer_inputs(sub_text: str) -> list[str]:
    """The files a submit description has HTCondor or PegasusLite bring into the job's sandbox."""
    files: list[str] = []
    for pattern in (r"^transfer_input_files\s*=\s*(.*)$", r"_PEGASUS_TRANSFER_INPUT_FILES=([^\s\"]*)"):
        for match in re.finditer(pattern, sub_text, flags=re.MULTILINE):
            files += [f.strip() for f in match.group(1).split(",") if f.strip()]
    return files


def sub_workflow_plan_arguments(dag_text: str, node: str) -> str:
    """The arguments the sub-workflow node's PRE script passes to ``pegasus-plan``."""
    for line in dag_text.splitlines():
        words = line.split(None, 4)
        if words[:3] == ["SCRIPT", "PRE", node]:
            return words[4] if len(words) > 4 else ""
    raise AssertionError(f"node {node} has no PRE script")


def check_plan(top_dag: str, compute_dag: str, finalize_sub: str) -> dict[str, int]:
    """Assert the ordering and sandbox properties of a planned workflow; return node counts.

    The compute DAG's nodes are all ancestors of the sub-workflow node (it ends when its DAG
    ends), so they are joined to it before ancestors of the final job are computed.
    """
    (sub_node,) = [n for n in dag_nodes(top_dag) if n.startswith(SUBWORKFLOW_PREFIX)]
    parents = dag_parents(top_dag)
    for node, node_parents in dag_parents(compute_dag).items():
        parents.setdefault(node, set()).update(node_parents)
    parents.setdefault(sub_node, set()).update(dag_nodes(compute_dag))
    before_final = ancestors(parents, FINAL_NODE)
    stage_outs = [n for n in dag_nodes(compute_dag) + dag_nodes(top_dag) if n.startswith("stage_out_")]
    assert stage_outs, "the compute DAG has no stage_out_* job"
    late = [n for n in stage_outs if n not in before_final]
    assert not late, f"stage-out jobs not ancestors of {FINAL_NODE}: {late}"
    assert not [n for n in dag_nodes(top_dag) if n.startswith(("stage_in_", "stage_inter_", "stage_out_"))], (
        "the final job's DAG moves files"
    )
    foreign = [f for f in transfer_inputs(finalize_sub) if not PEGASUS_OWN_INPUTS.match(Path(f).name)]
    assert not foreign, f"the final job transfers {len(foreign)} files, e.g. {foreign[:3]}"
    assert node_retry(top_dag, FINAL_NODE) == 0
    return {"stage_out": len(stage_outs), "compute_nodes": len(dag_nodes(compute_dag))}
