"""Graphviz (``.dot``) text of a pipeline's task / dataset-type graph.

Only text is produced: Graphviz need not be installed to write it
(render with ``dot -Tsvg pipeline.dot -o pipeline.svg`` where it is).
"""

from __future__ import annotations

from .core import Pipeline

__all__ = ["pipeline_to_dot"]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pipeline_to_dot(pipeline: Pipeline) -> str:
    """Tasks as boxes, dataset types as ellipses (overall inputs and outputs shaded).

    Deterministic: the same pipeline gives the same text, so it can be diffed.
    """
    flow = pipeline.datasetTypes()
    lines = [
        "digraph pipeline {",
        "  rankdir=TB;",
        '  node [fontname="Helvetica", fontsize=10];',
    ]
    for name, datasetType in flow.all.items():
        if name in flow.inputs:
            style = 'style=filled, fillcolor="#dbe9f6"'
        elif name in flow.outputs:
            style = 'style=filled, fillcolor="#e2f0d9"'
        else:
            style = "style=solid"
        label = f"{name}\\n({', '.join(datasetType.units)})\\n{datasetType.storageClass}"
        lines.append(f'  {_quote("dataset:" + name)} [shape=ellipse, {style}, label="{label}"];')
    for label, taskDef in pipeline.items():
        units = ", ".join(getattr(taskDef.taskClass, "quantumUnits", ()))
        text = f"{label}\\n{taskDef.taskClass.__name__}\\n[{units}]"
        lines.append(f'  {_quote("task:" + label)} [shape=box, style=rounded, label="{text}"];')
    for label, taskDef in pipeline.items():
        classes = taskDef.datasetClasses()
        for datasetType in classes["inputs"].values():
            lines.append(f"  {_quote('dataset:' + datasetType.name)} -> {_quote('task:' + label)};")
        for datasetType in classes["outputs"].values():
            lines.append(f"  {_quote('task:' + label)} -> {_quote('dataset:' + datasetType.name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
