"""``workflow.json``: how a `~bps.workflow.GenericWorkflow` is kept in its submit directory.

Why a format of its own
-----------------------
A workflow lists, for every job, the files it reads and writes. Written naively (format 1:
`workflow_to_json`), every dataset appears once as an output and again in every
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

This module is the only one that knows the JSON form of a workflow: `bps.workflow` holds the
model and imports nothing of this one, so the dependency runs one way.
"""

from __future__ import annotations

import functools
import json
import re
from array import array
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import IO, Any

from supertask.atomic_write import atomic_open

from .workflow import GenericWorkflow, Job, Resources, RetryPolicy, SiteConfig, WorkflowFile

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
        return workflow_from_json(data)
    if version != FORMAT:
        raise WorkflowFileError(
            f"{path} is a workflow of format {version}; this bps reads formats 1 and {FORMAT}: "
            "use the bps release that prepared it"
        )
    return _decode(data)


# ------------------------------------------------------------------------------------- writing
def _write(workflow: GenericWorkflow, out: IO[str]) -> None:
    """Two passes over the jobs; a streamed workflow's straight from its columns (`_write_columns`)."""
    if (
        hasattr(workflow.jobs, "argument_template")
        and not (workflow.final and (workflow.final.inputs or workflow.final.outputs))
        and _write_columns(workflow, out)
    ):
        return
    _write_objects(workflow, out)


#: Rows and jobs encoded and written together: one ``encode`` and one ``write`` per chunk.
_CHUNK = 1024
#: Stands for a job's own values in the JSON of its label's template job (`_job_pieces`).
_MARK = "\x00bps-job-field\x00"
#: Characters a JSON string holds as themselves (``ensure_ascii``), but for ``"`` and ``\``.
_PLAIN = re.compile(r'[^\x20-\x7e]|["\\]')


def _write_columns(workflow: GenericWorkflow, out: IO[str]) -> bool:
    """`_write_objects` for a `bps.workflow_stream` workflow, the same bytes, from its columns.

    Files are known by number, so the rows and the jobs' positions are integer arrays, not
    dictionaries keyed by name (10^6 jobs, 2 * 10^6 files); no `Job` or `WorkflowFile` is
    made, and the columns are read as they are (`StreamedJobs.columns`), no call per job or
    file. A job's JSON is its label's template (`_job_pieces`, encoded once) around its
    name, quantum, arguments and file rows. Returns False, having written nothing, when a
    label's template cannot be cut into pieces (a value holding `_MARK`).
    """
    jobs: Any = workflow.jobs
    pieces: dict[int, list[str]] = {}
    for label, template in jobs.label_templates().items():
        cut = _job_pieces(template)
        if cut is None:
            return False
        pieces[label] = cut
    c = jobs.columns()
    order, names, label_of, extra = c.order, c.names, c.label_of, c.extra
    in_start, in_files, out_start, out_files = c.in_start, c.in_files, c.out_start, c.out_files
    # job number -> position; one more entry, -1, read for a producer of -1 (an overall input)
    position = jobs.positions()
    position.append(-1)
    rows = array("q", [-1]) * len(c.lfns)
    schema_row = array("q", [-1]) * len(c.schemas)  # schema index -> row in file_schemas (first use)
    schema_order: list[int] = []
    count = 0
    out.write(_encode({"format": FORMAT, **_header(workflow)})[:-1])
    out.write(',"files":[')
    new: list[int] = []  # files in the order of their rows
    values, paths, lfns, producer, schema_of = c.values, c.paths, c.lfns, c.producer, c.schema_of

    def write_files() -> None:
        for s in dict.fromkeys(map(schema_of.__getitem__, new)):
            if schema_row[s] < 0:
                schema_row[s] = len(schema_order)
                schema_order.append(s)
        chunk = [
            [schema_row[schema_of[k]], list(values[k]), paths[k], position[producer[k]], lfns[k]] for k in new
        ]
        out.write(("," if count > len(new) else "") + _encode(chunk)[1:-1])
        new.clear()

    for j in order:
        for k in in_files[in_start[j] : in_start[j + 1]]:
            if rows[k] < 0:
                rows[k] = count
                count += 1
                new.append(k)
        for k in out_files[out_start[j] : out_start[j + 1]]:
            if rows[k] < 0:
                rows[k] = count
                count += 1
                new.append(k)
        if len(new) >= _CHUNK:
            write_files()
    if new:
        write_files()
    file_schemas = [[c.schemas[s][0], list(c.schemas[s][1])] for s in schema_order]
    out.write('],"file_schemas":' + _encode(file_schemas))
    out.write(',"jobs":[')
    plain = not _PLAIN.search("".join(names))
    name_json: Callable[[str], str] = (lambda name: '"' + name + '"') if plain else _encode
    arguments, quantum_at, name_at = jobs.argument_template()
    # the arguments' JSON before the quantum, between it and the name, after the name
    head = "[" + "".join(_encode(a) + "," for a in arguments[:quantum_at]) + '"'
    middle = '",' + "".join(_encode(a) + "," for a in arguments[quantum_at + 1 : name_at])
    tail = "".join("," + _encode(a) for a in arguments[name_at + 1 :])
    extra_json: dict[tuple[str, ...], str] = {(): tail + "]"}
    row_of = rows.__getitem__
    text: list[str] = []
    for i, j in enumerate(order):
        name = name_json(names[j])
        more = extra_json.get(extra.get(j, ()))
        if more is None:
            more = extra_json[extra[j]] = tail + "".join("," + _encode(a) for a in extra[j]) + "]"
        p = pieces[label_of[j]]
        text.append(
            f"{p[0]}{name}{p[1]}{j}{p[2]}{head}{j}{middle}{name}{more}{p[3]}"
            f"{','.join(map(str, map(row_of, in_files[in_start[j] : in_start[j + 1]])))}{p[4]}"
            f"{','.join(map(str, map(row_of, out_files[out_start[j] : out_start[j + 1]])))}{p[5]}"
        )
        if len(text) >= _CHUNK:
            out.write(("," if i >= len(text) else "") + ",".join(text))
            text.clear()
    if text:
        out.write(("," if len(order) > len(text) else "") + ",".join(text))
    out.write('],"parents":{')
    par_start, par_jobs = c.par_start, c.par_jobs
    name_of = names.__getitem__
    for i in range(0, len(order), _CHUNK):
        if plain:
            text = [
                f'"{names[j]}":['
                + (
                    '"' + '","'.join(map(name_of, par_jobs[par_start[j] : par_start[j + 1]])) + '"]'
                    if par_start[j + 1] > par_start[j]
                    else "]"
                )
                for j in order[i : i + _CHUNK]
            ]
        else:
            text = [
                f"{name_json(names[j])}:[{','.join(map(name_json, map(name_of, par_jobs[par_start[j] : par_start[j + 1]])))}]"
                for j in order[i : i + _CHUNK]
            ]
        out.write(("," if i else "") + ",".join(text))
    final = _job_to_json(workflow.final) if workflow.final else None
    out.write("}," + _encode({"final": final, "throttles": workflow.throttles})[1:])
    return True


def _job_pieces(template: Job) -> list[str] | None:
    """The JSON of a job of ``template``'s label cut around its own values: name, quantum id
    (inside ``[...]``), arguments, input rows and output rows (inside ``[...]``): six pieces.
    None if the cut fails (a shared value holds `_MARK`)."""
    fields = _job_to_json(template, files=([], []))
    fields["name"] = fields["arguments"] = _MARK
    fields["quantum_ids"] = fields["inputs"] = fields["outputs"] = [_MARK]
    pieces = _encode(fields).split(_encode(_MARK))
    return pieces if len(pieces) == 6 else None


def _write_objects(workflow: GenericWorkflow, out: IO[str]) -> None:
    """Two passes over the jobs: the files table (rows in order of first mention), then the
    jobs, each encoded and written at once (never all jobs' text in memory)."""
    jobs = workflow.jobs.values()
    job_index = {name: i for i, name in enumerate(workflow.jobs)}
    schemas: dict[tuple[str, tuple[str, ...]], int] = {}
    rows: dict[str, int] = {}  # lfn -> row: a dataset's name is unique within a workflow
    out.write(_encode({"format": FORMAT, **_header(workflow)})[:-1])
    out.write(',"files":[')

    def add_rows(job: Job) -> None:
        for f in (*job.inputs, *job.outputs):
            if f.lfn in rows:
                continue
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

    def row_of(f: WorkflowFile) -> int:
        return rows[f.lfn]

    for job in jobs:
        add_rows(job)
    if workflow.final:
        add_rows(workflow.final)
    out.write('],"file_schemas":' + _encode([[name, list(keys)] for name, keys in schemas]))
    out.write(',"jobs":[')
    for i, job in enumerate(jobs):
        out.write(("," if i else "") + _encode(_job_to_json(job, row_of)))
    _write_tail(workflow, out, row_of)


def _write_tail(workflow: GenericWorkflow, out: IO[str], row_of: Callable[[WorkflowFile], Any]) -> None:
    """The end of the jobs list, ``parents``, ``final`` and ``throttles``."""
    # parents one job at a time too: as one string they would be a few hundred bytes per job
    out.write('],"parents":{')
    for i, (name, parents) in enumerate(workflow.parents.items()):
        out.write(("," if i else "") + _encode(name) + ":" + _encode(parents))
    final = _job_to_json(workflow.final, row_of) if workflow.final else None
    out.write("}," + _encode({"final": final, "throttles": workflow.throttles})[1:])


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
    return workflow_from_json(data, files.__getitem__)


# ------------------------------------------------------------------------------ the JSON form
def workflow_to_json(workflow: GenericWorkflow) -> dict[str, Any]:
    """The JSON-ready dict of format 1: every file in full wherever a job names it."""
    return {
        **_header(workflow),
        "jobs": [_job_to_json(job) for job in workflow.jobs.values()],
        "parents": workflow.parents,
        "final": _job_to_json(workflow.final) if workflow.final else None,
        "throttles": workflow.throttles,
    }


def workflow_from_json(
    data: dict[str, Any], file_from_json: Callable[[Any], WorkflowFile] | None = None
) -> GenericWorkflow:
    """The workflow of a `workflow_to_json` dict (``file_from_json``: see `_job_from_json`)."""
    file_from_json = file_from_json or _file_from_json
    wf = GenericWorkflow(
        name=data["name"],
        submit_dir=data["submit_dir"],
        graph_file=data["graph_file"],
        repo=data["repo"],
        output_run=data["output_run"],
        site=SiteConfig(**data["site"]),
        throttles=data.get("throttles", {}),
    )
    for raw in data["jobs"]:
        job = _job_from_json(raw, file_from_json)
        wf.jobs[job.name] = job
    wf.parents = {k: list(v) for k, v in data["parents"].items()}
    wf.final = _job_from_json(data["final"], file_from_json) if data.get("final") else None
    return wf


def _header(workflow: GenericWorkflow) -> dict[str, Any]:
    """The fields that come before ``jobs`` in both formats."""
    return {
        "name": workflow.name,
        "submit_dir": workflow.submit_dir,
        "graph_file": workflow.graph_file,
        "repo": workflow.repo,
        "output_run": workflow.output_run,
        "site": asdict(workflow.site),
    }


_JOB_FIELDS = tuple(f.name for f in fields(Job))


def _file_to_json(f: WorkflowFile) -> dict[str, Any]:
    return {
        "lfn": f.lfn,
        "dataset_type": f.dataset_type,
        "data_id": f.data_id,
        "path": f.path,
        "producer": f.producer,
    }


@functools.lru_cache(maxsize=1024)
def _frozen_to_json(value: Resources | RetryPolicy) -> dict[str, Any]:
    """``asdict`` of a frozen value; cached because a workflow's jobs share a handful of them
    (one ``asdict`` per job and value was a sixth of writing a 10^5-job workflow)."""
    return asdict(value)


def _job_to_json(
    job: Job,
    file_to_json: Callable[[WorkflowFile], Any] = _file_to_json,
    files: tuple[list[Any], list[Any]] | None = None,
) -> dict[str, Any]:
    """``dataclasses.asdict(job)`` without its deep copy of every value: the same JSON, about
    ten times faster (a 10^5-quantum workflow holds a few hundred thousand files). ``files``:
    the ``inputs`` and ``outputs`` entries already made (then ``file_to_json`` is not used)."""
    out = {name: getattr(job, name) for name in _JOB_FIELDS}
    out["quantum_ids"], out["arguments"], out["tags"] = (
        list(job.quantum_ids),
        list(job.arguments),
        dict(job.tags),
    )
    out["resources"] = dict(_frozen_to_json(job.resources))
    out["retry"] = dict(_frozen_to_json(job.retry))
    if files is None:
        out["inputs"] = [file_to_json(f) for f in job.inputs]
        out["outputs"] = [file_to_json(f) for f in job.outputs]
    else:
        out["inputs"], out["outputs"] = files
    return out


def _file_from_json(raw: dict[str, Any]) -> WorkflowFile:
    return WorkflowFile(**raw)


def _job_from_json(
    raw: dict[str, Any], file_from_json: Callable[[Any], WorkflowFile] = _file_from_json
) -> Job:
    """A job from its JSON form; ``file_from_json`` turns each entry of ``inputs``/``outputs`` into a file
    (format 1: the file's own fields; format 2: a row index)."""
    raw = dict(raw)
    raw["resources"] = Resources(**raw["resources"])
    retry = dict(raw["retry"])
    retry["no_retry_exit_codes"] = tuple(retry["no_retry_exit_codes"])
    raw["retry"] = RetryPolicy(**retry)
    raw["inputs"] = [file_from_json(f) for f in raw["inputs"]]
    raw["outputs"] = [file_from_json(f) for f in raw["outputs"]]
    return Job(**raw)
