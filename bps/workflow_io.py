"""``workflow.json``: how a `~bps.workflow.GenericWorkflow` is kept in its submit directory.

Why a format of its own
-----------------------
A workflow lists, for every job, the files it reads and writes. Written naively (format 1:
``GenericWorkflow.to_json``), every dataset appears once as an output and again in every
job that reads it, each time with its logical file name, type, data ID, path and producer:
806 MiB for 10^6 quanta, twelve times the graph file it came from (copies of the
graph in the submit directory multiply submission time and memory). Format 2 keeps one row per
dataset in a ``files`` table and lets jobs refer to rows by index:

- ``file_schemas``: ``[[dataset type, [data ID keys]], ...]``;
- ``files``: ``[[schema index, [data ID values], path, producer job index or -1, logical
  file name], ...]``; the name is stored, not recomputed, because staged files and
  manifests already carry it: a later release must read the names this one wrote;
- ``jobs``: as in format 1, with ``inputs`` and ``outputs`` lists of file indices; the
  producer index counts jobs in this list's order;
- everything else (header fields, ``parents``, ``final``, ``throttles``) as in format 1.

Both are JSON, written one row at a time (the document is never one string in memory), and
`load_workflow` reads either format, so submit directories prepared earlier still report and
restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from supertask.atomic_write import atomic_open

from .workflow import GenericWorkflow, WorkflowFile, _job_to_json

FORMAT = 2
_encode = json.JSONEncoder(separators=(",", ":")).encode


class WorkflowFileError(ValueError):
    """``workflow.json`` cannot be read; the message names the file and what is wrong."""


def save_workflow(workflow: GenericWorkflow, path: str | Path) -> None:
    """Write ``workflow`` in format 2, atomically (temporary file, then rename)."""
    # not synced: written by bps prepare before anything is submitted (a crash means preparing again)
    with atomic_open(path, "w", fsync=False) as out:
        _write(workflow, out)


def load_workflow(path: str | Path) -> GenericWorkflow:
    """Read a ``workflow.json`` of format 1 or 2."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise WorkflowFileError(
            f"cannot read the workflow {path}: {err}; prepare the submit directory again"
        ) from None
    version = data.get("format", 1)
    if version == 1:
        return GenericWorkflow.from_json(data)
    if version != FORMAT:
        raise WorkflowFileError(
            f"{path} is a workflow of format {version}; this bps reads formats 1 and {FORMAT}: "
            "use the bps release that prepared it"
        )
    return _decode(data)


# ------------------------------------------------------------------------------------- writing
def _write(workflow: GenericWorkflow, out: TextIO) -> None:
    jobs = list(workflow.jobs.values())
    job_index = {job.name: i for i, job in enumerate(jobs)}
    schemas: dict[tuple[str, tuple[str, ...]], int] = {}
    rows: dict[str, int] = {}  # lfn -> row: a dataset's name is unique within a workflow
    out.write(_encode({"format": FORMAT, **workflow.to_json_header()})[:-1])
    out.write(',"files":[')

    def row_of(f: WorkflowFile) -> int:
        index = rows.get(f.lfn)
        if index is None:
            keys = tuple(f.data_id)
            schema = schemas.setdefault((f.dataset_type, keys), len(schemas))
            producer = job_index.get(f.producer, -1) if f.producer is not None else -1
            if f.producer is not None and producer < 0:
                raise ValueError(
                    f"file {f.lfn!r} names producer {f.producer!r}, which is not a job of the workflow"
                )
            index = rows[f.lfn] = len(rows)
            row = [schema, list(f.data_id.values()), f.path, producer, f.lfn]
            out.write(("," if index else "") + _encode(row))
        return index

    encoded_jobs = []
    for job in jobs:
        encoded_jobs.append(_encode(_job_to_json(job, row_of)))
    final = _job_to_json(workflow.final, row_of) if workflow.final else None
    out.write('],"file_schemas":' + _encode([[name, list(keys)] for name, keys in schemas]))
    out.write(',"jobs":[')
    for i, text in enumerate(encoded_jobs):
        out.write(("," if i else "") + text)
    tail = {"parents": workflow.parents, "final": final, "throttles": workflow.throttles}
    out.write("]," + _encode(tail)[1:])


# ------------------------------------------------------------------------------------- reading
def _decode(data: dict[str, Any]) -> GenericWorkflow:
    names = [raw["name"] for raw in data["jobs"]]
    schemas = [(name, tuple(keys)) for name, keys in data["file_schemas"]]
    files: list[WorkflowFile] = []
    for schema, values, path, producer, lfn in data["files"]:
        dataset_type, keys = schemas[schema]
        files.append(
            WorkflowFile(
                lfn=lfn,
                dataset_type=dataset_type,
                data_id=dict(zip(keys, values, strict=True)),
                path=path,
                producer=names[producer] if producer >= 0 else None,
            )
        )
    return GenericWorkflow.from_json(data, files.__getitem__)
