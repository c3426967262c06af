"""``workflow.json``: how a `~bps.workflow.GenericWorkflow` is kept in its submit directory.

Why a format of its own
-----------------------
A workflow lists, for every job, the files it reads and writes. Written naively (format 1:
`workflow_to_json`), every dataset appears once as an output and again in every
job that reads it, each time with its logical file name, type, data ID, path and producer:
806 MiB for 10^6 quanta, twelve times the graph file it came from. Format 2 kept one row per
dataset in a ``files`` table, jobs referring to rows by index; but every job still carried
what all jobs of its label share (resources, retry policy, log subdirectory, tags...) and
its whole command line: about 800 bytes per job, 1 GiB for 10^6 jobs, which every ``bps
report``, ``status`` and ``restart`` read whole. Format 3 (written now) stores what jobs
share once:

- header fields first (``name``, ``submit_dir``, ``graph_file``, ``repo``, ``output_run``,
  ``site``), so that `load_header` reads them without the rest of the file;
- ``files``: ``[[schema index, [data ID values], path, producer job position or -1], ...]``,
  plus the logical file name as a fifth value only when it is not `bps.names.dataset_lfn`
  of the row's type and data ID (the reader recomputes it; every data ID value an int or a
  str, so that JSON gives back the values it was computed from). The names of staged files
  and manifests are those names: a release that changes `dataset_lfn` must bump the format;
- ``file_schemas``: ``[[dataset type, [data ID keys]], ...]``;
- ``jobs``: ``[[name, label row, quantum ids, arguments row, [input file rows], [output file
  rows], [parent job positions] or null], ...]`` in the workflow's order (parents by
  position, not name; null: the job has no entry in ``parents``), and a dict of the fields
  in which a job differs from its label's defaults as an eighth value when it does;
- ``labels``: per label, in order of first appearance, the values its jobs share:
  ``{"label", "resources", "retry", "log_subdir", "priority", "throttle", "tags",
  "executable"}`` (those of its first job);
- ``arguments``: the distinct command lines, each a list of strings and of codes for a
  job's own values: -1 its name, ``-2 - i`` ``str(quantum_ids[i])``; a job of 10^6 names one
  of a few hundred rows (jobs differ by name, quantum and input-locations file);
- ``final`` (as in format 2: a job dict whose files are row indices) and ``throttles``.

Every format is JSON, written one row at a time (the document is never one string in
memory), and `load_workflow` reads formats 1, 2 and 3 into equal workflows, so submit
directories prepared earlier still report and restart.

This module is the only one that knows the JSON form of a workflow: `bps.workflow` holds the
model and imports nothing of this one, so the dependency runs one way.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import operator
import re
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any, cast

from .column_runs import consecutive, one_each
from .names import lfn_formatter, lfns_formatter
from .submit_files import submit_file
from .workflow import GenericWorkflow, Job, Resources, RetryPolicy, SiteConfig, WorkflowFile

FORMAT = 3
_encode = json.JSONEncoder(separators=(",", ":")).encode
#: `_encode` without the check for circular references, for rows made of the columns' tuples,
#: ints and strs (which cannot hold themselves): that check (one dictionary entry per list
#: or tuple encoded) was about a quarter of encoding the ``files`` table.
_encode_rows = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
#: The header fields, first in every format (`load_header`).
HEADER_FIELDS = ("name", "submit_dir", "graph_file", "repo", "output_run", "site")
#: A job's fields its label's row holds (`_label_defaults`); a job states them only when it differs.
_DEFAULT_FIELDS = ("resources", "retry", "log_subdir", "priority", "throttle", "tags", "executable")
#: In an ``arguments`` row: the job's name; ``_QUANTUM - i``: ``str(quantum_ids[i])``.
_NAME, _QUANTUM = -1, -2
#: Data ID value types that JSON gives back as they were: a file row whose values are all
#: of these may leave out its logical file name (the reader recomputes it).
_EXACT = frozenset({int, str})


class WorkflowFileError(ValueError):
    """``workflow.json`` cannot be read; the message names the file and what is wrong."""


def save_workflow(workflow: GenericWorkflow, path: str | Path) -> None:
    """Write ``workflow`` in format 3, atomically (temporary file, then rename), not synced
    (`bps.submit_files`: the policy for every file of a submit directory)."""
    with submit_file(path) as out:  # atomically, not synced: `bps.submit_files`
        _write(workflow, out)


def load_workflow(path: str | Path) -> GenericWorkflow:
    """Read a ``workflow.json`` of format 1, 2 or 3.

    Raises
    ------
    WorkflowFileError
        The file is missing, truncated, damaged or of a format this release does not read.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise WorkflowFileError(
            f"cannot read the workflow {path}: {err}; prepare the submit directory again"
        ) from None
    version = data.get("format", 1) if isinstance(data, dict) else None
    if version not in (1, 2, FORMAT):
        raise WorkflowFileError(
            f"{path} is a workflow of format {version}; this bps reads formats 1 to {FORMAT}: "
            "use the bps release that prepared it"
        )
    try:
        if version == 1:
            return workflow_from_json(data)
        if version == 2:
            return _decode_v2(data)
        return _decode(data)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise WorkflowFileError(
            f"the workflow {path} is damaged ({type(err).__name__}: {err}); prepare the submit directory again"
        ) from None


def load_header(path: str | Path) -> dict[str, Any]:
    """The header fields (`HEADER_FIELDS`) of a ``workflow.json`` of any format, read from the
    start of the file only: what ``bps`` needs to pick the workflow system of a submit
    directory without parsing 10^6 jobs.

    Raises
    ------
    WorkflowFileError
        As `load_workflow`, when the start of the file is not a workflow's header.
    """
    path = Path(path)
    size = 1 << 16
    try:
        with path.open(encoding="utf-8") as stream:
            text = stream.read(size)
            while True:
                found = _scan_header(text)
                if found is not None:
                    return found
                more = stream.read(size)
                if not more:
                    break
                text += more
                size *= 2
    except (OSError, ValueError) as err:
        raise WorkflowFileError(
            f"cannot read the workflow {path}: {err}; prepare the submit directory again"
        ) from None
    raise WorkflowFileError(
        f"cannot read the workflow {path}: it has no complete header; prepare the submit directory again"
    )


def workflow_site(path: str | Path) -> SiteConfig:
    """The `SiteConfig` of a ``workflow.json``, from its header (`load_header`)."""
    return SiteConfig(**load_header(path)["site"])


_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _scan_header(text: str) -> dict[str, Any] | None:
    """The header fields at the start of ``text`` (a prefix of the file), or None if the
    prefix ends before them. Raises ValueError if ``text`` does not start a JSON object."""
    decode = json.JSONDecoder().raw_decode
    at = _WHITESPACE.match(text).end()  # type: ignore[union-attr]
    if at == len(text):
        return None
    if text[at] != "{":
        raise ValueError("not a JSON object")
    at += 1
    found: dict[str, Any] = {}
    while True:
        at = _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]
        try:
            key, at = decode(text, at)
            at = _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]
            if text[at : at + 1] != ":":
                return None if at >= len(text) else _not_a_header()
            value, at = decode(text, _WHITESPACE.match(text, at + 1).end())  # type: ignore[union-attr]
        except (ValueError, IndexError):
            return None  # the prefix ends inside this key or value: read more
        if key in HEADER_FIELDS:
            found[key] = value
            if len(found) == len(HEADER_FIELDS):
                return found
        elif key in ("files", "jobs"):
            _not_a_header()
        at = _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]
        if at >= len(text):
            return None
        if text[at] != ",":
            _not_a_header()
        at += 1


def _not_a_header() -> Any:
    raise ValueError("its header fields are missing or not first")


# ------------------------------------------------------------------------------------- writing
def _write(workflow: GenericWorkflow, out: IO[str]) -> None:
    """One pass over the jobs; a streamed workflow's straight from its columns (`_write_columns`)."""
    if hasattr(workflow.jobs, "argument_template") and not (
        workflow.final and (workflow.final.inputs or workflow.final.outputs)
    ):
        _write_columns(workflow, out)
    else:
        _write_objects(workflow, out)


#: Rows and jobs encoded and written together: one ``encode`` and one ``write`` per chunk.
_CHUNK = 1024


def _plain(text: str) -> bool:
    r"""Whether JSON (``ensure_ascii``) writes ``text`` as itself between quotes: every
    character in ``\x20``-``\x7e`` (ASCII and printable), none a ``"`` or a ``\``. Tested
    by str methods in C: a regular expression took a tenth of the writer at 10^5 jobs."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


#: ``j + 1``, for ``map``.
_NEXT = (1).__add__


@functools.lru_cache(maxsize=256)
def _lfns_of(dataset_type: str, keys: tuple[str, ...]) -> Callable[[Sequence[tuple[Any, ...]]], list[str]]:
    return lfns_formatter(dataset_type, keys)


@functools.lru_cache(maxsize=256)
def _lfn_of(dataset_type: str, keys: tuple[str, ...]) -> Callable[[tuple[Any, ...]], str]:
    return lfn_formatter(dataset_type, keys)


def _derived(dataset_type: str, keys: tuple[str, ...], values: Sequence[Any], lfn: str) -> bool:
    """Whether a reader recomputes ``lfn`` from the row (values that JSON gives back as they are)."""
    return all(type(v) in _EXACT for v in values) and _lfn_of(dataset_type, keys)(tuple(values)) == lfn


def _label_row(job: Job) -> dict[str, Any]:
    """The ``labels`` row of ``job``'s label, with ``job``'s values."""
    out = _job_to_json(job, files=([], []))
    return {"label": job.label, **{name: out[name] for name in _DEFAULT_FIELDS}}


def _arguments_row(arguments: Sequence[str], name: str, quantum_ids: Sequence[int]) -> tuple[Any, ...]:
    """``arguments`` with the job's own values replaced by their codes (`_NAME`, `_QUANTUM`)."""
    quanta: dict[str, int] = {}
    for i, q in enumerate(quantum_ids):
        quanta.setdefault(str(q), _QUANTUM - i)
    row = tuple(_NAME if a == name else quanta.get(a, a) for a in arguments)
    for a in arguments:
        if not isinstance(a, str):  # a number would read back as a code
            raise ValueError(f"job {name!r} has the argument {a!r}, not a string: command lines are strings")
    return row


def _listed(
    files: array[int], start: array[int], jobs: array[int], lookup: Callable[[int], int], run: int | None
) -> Iterable[int | str]:
    """What goes between the brackets of each of ``jobs``' list of ``lookup`` of
    ``files[start[j]:start[j + 1]]``: made in C (``map``) when every job of ``jobs`` has one
    file (calibrate's input and output) or none (its parents), else one join per job.
    ``run``: `bps.column_runs.consecutive` of ``jobs``; consecutive jobs' lists are then read as one slice."""
    if run is not None:
        at = one_each(start, run, len(jobs))
        if at is not None:
            return map(lookup, files[at : at + len(jobs)])
        if start[run] == start[run + len(jobs)]:
            return itertools.repeat("", len(jobs))
    first = list(map(start.__getitem__, jobs))
    counts = set(map(operator.sub, map(start.__getitem__, map(_NEXT, jobs)), first))
    if counts == {1}:
        return map(lookup, map(files.__getitem__, first))
    if counts == {0}:
        return itertools.repeat("", len(jobs))
    return [",".join(map(str, map(lookup, files[start[j] : start[j + 1]]))) for j in jobs]


def _new_pairs(c: Any, jobs: array[int], rows: array[int]) -> list[int] | None:
    """The files ``jobs`` mention, in order (each job's input, then its output), when ``jobs``
    are consecutive (`bps.column_runs.consecutive`), each has one input and one output, and all those files are
    distinct and not numbered yet (``rows`` -1): calibrate's chunks. None otherwise (the
    caller then goes job by job). Every test is made in C over slices of the columns."""
    run = consecutive(jobs)
    if run is None:
        return None
    k = len(jobs)
    a, b = one_each(c.in_start, run, k), one_each(c.out_start, run, k)
    if a is None or b is None:
        return None
    ins, outs = c.in_files[a : a + k], c.out_files[b : b + k]
    if (
        set(map(rows.__getitem__, ins)) != {-1}
        or set(map(rows.__getitem__, outs)) != {-1}
        or len(set(ins).union(outs)) != 2 * k
    ):
        return None
    return list(itertools.chain.from_iterable(zip(ins, outs, strict=True)))


def _write_columns(workflow: GenericWorkflow, out: IO[str]) -> None:
    """`_write_objects` for a `bps.workflow_stream` workflow, the same bytes, from its columns.

    Files are known by number, so the rows and the jobs' positions are integer arrays, not
    dictionaries keyed by name (10^6 jobs, 2 * 10^6 files); no `Job` or `WorkflowFile` is
    made, and the columns are read as they are (`StreamedJobs.columns`), no call per job or
    file. Every job of a label shares its label's defaults (`StreamedJobs.label_templates`),
    and a job's command line is the label-independent `StreamedJobs.argument_template`
    plus the arguments prepare added (one tuple per group of jobs).

    Rows and jobs go by chunks of `_CHUNK`: file rows as tuples zipped from the columns for the
    C JSON encoder, a chunk's jobs by one ``%`` each over ``map`` (`_listed`). Text made
    wholly by nested ``map`` and ``join`` was slower than that.
    """
    jobs: Any = workflow.jobs
    templates: dict[int, Job] = jobs.label_templates()
    label_row = {label: i for i, label in enumerate(templates)}
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
    values, paths, lfns, producer, schema_of = c.values, c.paths, c.lfns, c.producer, c.schema_of

    def kept_lfns(new: list[int], rows_of: list[tuple[Any, ...]]) -> set[int]:
        """The files of ``new`` (data ID values ``rows_of``) whose row must hold the name (not
        `dataset_lfn` of the row).

        A streamed workflow names every file by `bps.names.lfn_formatter` /
        `bps.names.lfns_formatter` of the very values the row holds (`bps.workflow_stream`),
        the rule the reader applies: checking every name again cost more than writing them
        (a seventh of this writer at 10^5). So a schema's files of a chunk are checked in C
        for values JSON gives back as they are (ints and strs), and by one name, the first:
        a rule that differed would differ there, and then every name of the group is checked.
        """
        kept: set[int] = set()
        # the usual case at once: every value an int or a str, and the first name of each schema derived
        first = dict(zip(map(schema_of.__getitem__, reversed(new)), reversed(new), strict=True))
        if set(map(type, itertools.chain.from_iterable(rows_of))) <= _EXACT and all(
            _derived(c.schemas[s][0], c.schemas[s][1], values[k], lfns[k]) for s, k in first.items()
        ):
            return kept
        for s, numbers in itertools.groupby(sorted(new, key=schema_of.__getitem__), schema_of.__getitem__):
            group = list(numbers)
            dataset_type, keys = c.schemas[s]
            group_rows = list(map(values.__getitem__, group))
            if set(map(type, itertools.chain.from_iterable(group_rows))) <= _EXACT and _derived(
                dataset_type, keys, group_rows[0], lfns[group[0]]
            ):
                continue
            kept.update(
                k
                for k, v in zip(group, group_rows, strict=True)
                if not _derived(dataset_type, keys, v, lfns[k])
            )
        return kept

    def write_files(new: list[int], first: bool) -> None:
        for s in dict.fromkeys(map(schema_of.__getitem__, new)):
            if schema_row[s] < 0:
                schema_row[s] = len(schema_order)
                schema_order.append(s)
        rows_of = list(map(values.__getitem__, new))
        kept = kept_lfns(new, rows_of)
        # tuples, made by zip in C: JSON writes them as lists
        chunk: list[Any] = list(
            zip(
                map(schema_row.__getitem__, map(schema_of.__getitem__, new)),
                rows_of,
                map(paths.__getitem__, new),
                map(position.__getitem__, map(producer.__getitem__, new)),
                strict=True,
            )
        )
        for i, k in enumerate(new) if kept else ():
            if k in kept:
                chunk[i] = (*chunk[i], lfns[k])
        out.write(("" if first else ",") + _encode_rows(chunk)[1:-1])

    new: list[int] = []  # files in the order of their rows, not written yet
    for at in range(0, len(order), _CHUNK):
        chunk = order[at : at + _CHUNK]
        news = _new_pairs(c, chunk, rows)
        if news is not None:  # consecutive jobs of one new input and one new output each: in C
            collections.deque(map(rows.__setitem__, news, range(count, count + len(news))), maxlen=0)
            count += len(news)
            new += news
        else:
            for j in chunk:
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
            write_files(new, count == len(new))
            new = []
    if new:
        write_files(new, count == len(new))
    file_schemas = [[c.schemas[s][0], list(c.schemas[s][1])] for s in schema_order]
    out.write('],"file_schemas":' + _encode(file_schemas))
    out.write(',"jobs":[')
    plain = _plain("".join(names))
    # ``%`` over tuples zipped in C: about a tenth faster than ``str.format`` over the same values
    job_row = ('["%s",%d,[%d],%d,[%s],[%s],[%s]]' if plain else "[%s,%d,[%d],%d,[%s],[%s],[%s]]").__mod__
    base, quantum_at, name_at = jobs.argument_template()
    base = list(base)
    base[quantum_at], base[name_at] = _QUANTUM, _NAME
    argument_rows: dict[tuple[str, ...], int] = {}
    row_of = rows.__getitem__
    position_of = position.__getitem__
    par_start, par_jobs = c.par_start, c.par_jobs
    for at in range(0, len(order), _CHUNK):
        # a chunk of jobs' text by one ``%`` per job, its arguments made in C (`_listed`)
        chunk = order[at : at + _CHUNK]
        run = consecutive(chunk)
        more = list(map(extra.get, chunk, itertools.repeat(())))
        for arguments in dict.fromkeys(more):  # rows in order of first use
            argument_rows.setdefault(arguments, len(argument_rows))
        text = map(
            job_row,
            zip(
                map(names.__getitem__, chunk) if plain else map(_encode, map(names.__getitem__, chunk)),
                map(label_row.__getitem__, map(label_of.__getitem__, chunk)),
                chunk,
                map(argument_rows.__getitem__, more),
                _listed(in_files, in_start, chunk, row_of, run),
                _listed(out_files, out_start, chunk, row_of, run),
                _listed(par_jobs, par_start, chunk, position_of, run),
                strict=True,
            ),
        )
        out.write(("," if at else "") + ",".join(text))
    labels = [_label_row(template) for template in templates.values()]
    arguments = [[*base, *more] for more in argument_rows]
    final = _job_to_json(workflow.final) if workflow.final else None
    out.write(
        "],"
        + _encode(
            {"labels": labels, "arguments": arguments, "final": final, "throttles": workflow.throttles}
        )[1:]
    )


def _write_objects(workflow: GenericWorkflow, out: IO[str]) -> None:
    """Two passes over the jobs: the files table (rows in order of first mention), then the
    jobs, each encoded and written at once (never all jobs' text in memory), with the
    label and argument rows they name collected on the way and written after them."""
    jobs = workflow.jobs.values()
    position = {name: i for i, name in enumerate(workflow.jobs)}
    unknown = [name for name in workflow.parents if name not in position]
    if unknown:
        raise ValueError(f"parents are given for {unknown[0]!r}, which is not a job of the workflow")
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
            producer = position.get(f.producer, -1) if f.producer is not None else -1
            if f.producer is not None and producer < 0:
                raise ValueError(
                    f"file {f.lfn!r} names producer {f.producer!r}, which is not a job of the workflow"
                )
            index = rows[f.lfn] = len(rows)
            values = list(f.data_id.values())
            row = [schema, values, f.path, producer]
            if not _derived(f.dataset_type, keys, values, f.lfn):
                row.append(f.lfn)
            out.write(("," if index else "") + _encode(row))

    def row_of(f: WorkflowFile) -> int:
        return rows[f.lfn]

    for job in jobs:
        add_rows(job)
    if workflow.final:
        add_rows(workflow.final)
    out.write('],"file_schemas":' + _encode([[name, list(keys)] for name, keys in schemas]))
    out.write(',"jobs":[')
    label_rows: dict[str, int] = {}
    labels: list[dict[str, Any]] = []
    defaults: list[Job] = []
    argument_rows: dict[tuple[Any, ...], int] = {}
    parents = workflow.parents
    for i, job in enumerate(jobs):
        li = label_rows.get(job.label)
        if li is None:
            li = label_rows[job.label] = len(labels)
            labels.append(_label_row(job))
            defaults.append(job)
        default = defaults[li]
        changed = [name for name in _DEFAULT_FIELDS if getattr(job, name) != getattr(default, name)]
        arguments = _arguments_row(job.arguments, job.name, job.quantum_ids)
        a = argument_rows.setdefault(arguments, len(argument_rows))
        mine = parents.get(job.name)
        try:
            par = None if mine is None else [position[p] for p in mine]
        except KeyError as err:
            raise ValueError(
                f"job {job.name!r} names parent {err.args[0]!r}, which is not a job of the workflow"
            ) from None
        row: list[Any] = [
            job.name, li, list(job.quantum_ids), a,
            [rows[f.lfn] for f in job.inputs], [rows[f.lfn] for f in job.outputs], par,
        ]  # fmt: skip
        if changed:
            own = _job_to_json(job, files=([], []))
            row.append({name: own[name] for name in changed})
        out.write(("," if i else "") + _encode(row))
    final = _job_to_json(workflow.final, row_of) if workflow.final else None
    tail = {"labels": labels, "arguments": [list(r) for r in argument_rows], "final": final}
    out.write("]," + _encode({**tail, "throttles": workflow.throttles})[1:])


# ------------------------------------------------------------------------------------- reading
@dataclass(frozen=True, slots=True)
class _Defaults:
    """A ``labels`` row, decoded: shared by the jobs of the label (but ``tags``, copied per job)."""

    label: str
    resources: Resources
    retry: RetryPolicy
    log_subdir: str
    priority: int
    throttle: str | None
    tags: dict[str, str]
    executable: str


def _resources(raw: dict[str, Any]) -> Resources:
    return Resources(**raw)


def _retry(raw: dict[str, Any]) -> RetryPolicy:
    retry = dict(raw)
    retry["no_retry_exit_codes"] = tuple(retry["no_retry_exit_codes"])
    return RetryPolicy(**retry)


def _defaults(raw: dict[str, Any]) -> _Defaults:
    return _Defaults(
        label=raw["label"],
        resources=_resources(raw["resources"]),
        retry=_retry(raw["retry"]),
        log_subdir=raw["log_subdir"],
        priority=raw["priority"],
        throttle=raw["throttle"],
        tags=dict(raw["tags"]),
        executable=raw["executable"],
    )


def _command_line(row: list[Any]) -> Callable[[str, list[int]], list[str]]:
    """``make(name, quantum_ids)``: the command line of an ``arguments`` row for one job."""
    template = [a if isinstance(a, str) else "" for a in row]
    for a in row:
        if not isinstance(a, str) and (type(a) is not int or a > _NAME):
            raise ValueError(f"arguments row holds {a!r}, neither a string nor a job's value")
    at_name = [i for i, a in enumerate(row) if a == _NAME]
    at_quanta = [(i, _QUANTUM - a) for i, a in enumerate(row) if type(a) is int and a <= _QUANTUM]
    if len(at_name) == 1 and len(at_quanta) == 1:
        n, (q, which) = at_name[0], at_quanta[0]

        def one(name: str, quantum_ids: list[int]) -> list[str]:
            arguments = template.copy()
            arguments[n] = name
            arguments[q] = str(quantum_ids[which])
            return arguments

        return one

    def make(name: str, quantum_ids: list[int]) -> list[str]:
        arguments = template.copy()
        for i in at_name:
            arguments[i] = name
        for i, which in at_quanta:
            arguments[i] = str(quantum_ids[which])
        return arguments

    return make


def _files(data: dict[str, Any], names: list[str]) -> list[WorkflowFile]:
    """The ``files`` table of format 3, names recomputed where a row leaves its name out."""
    schemas = [(name, tuple(keys)) for name, keys in data["file_schemas"]]
    raw = data["files"]
    lfns: list[str | None] = [row[4] if len(row) > 4 else None for row in raw]
    missing: dict[int, list[int]] = {}
    for i, row in enumerate(raw):
        if len(row) == 4:
            missing.setdefault(row[0], []).append(i)
    for s, group in missing.items():
        dataset_type, keys = schemas[s]
        made = _lfns_of(dataset_type, keys)([tuple(raw[i][1]) for i in group])
        for i, name in zip(group, made, strict=True):
            lfns[i] = name
    return _file_rows(raw, cast("list[str]", lfns), schemas, names)


def _file_rows(
    rows: list[list[Any]], lfns: list[str], schemas: list[tuple[str, tuple[str, ...]]], names: list[str]
) -> list[WorkflowFile]:
    """The `WorkflowFile` of each ``[schema, values, path, producer, ...]`` row of format 2 or 3."""
    files: list[WorkflowFile] = []
    for (schema, values, path, producer, *_), lfn in zip(rows, lfns, strict=True):
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
    return files


def _decode(data: dict[str, Any]) -> GenericWorkflow:
    """The workflow of a format-3 document."""
    raw_jobs = data["jobs"]
    names = [row[0] for row in raw_jobs]
    files = _files(data, names)
    file_of = files.__getitem__
    labels = [_defaults(raw) for raw in data["labels"]]
    command_lines = [_command_line(row) for row in data["arguments"]]
    wf = GenericWorkflow(**_header_from_json(data), throttles=data.get("throttles", {}))
    jobs, parents = wf.jobs, wf.parents
    for row in raw_jobs:
        name, label, quantum_ids, arguments, inputs, outputs, par = row[:7]
        d = labels[label]
        job = Job(
            name,
            d.label,
            quantum_ids,
            command_lines[arguments](name, quantum_ids),
            d.resources,
            d.retry,
            list(map(file_of, inputs)),
            list(map(file_of, outputs)),
            d.log_subdir,
            d.priority,
            d.throttle,
            dict(d.tags),
            d.executable,
        )
        if len(row) > 7:
            _override(job, row[7])
        if name in jobs:
            raise ValueError(f"job {name!r} appears twice")
        jobs[name] = job
        if par is not None:
            parents[name] = [names[p] for p in par]
    wf.final = _job_from_json(data["final"], file_of) if data.get("final") else None
    return wf


def _override(job: Job, own: dict[str, Any]) -> None:
    """Set the fields in which ``job`` differs from its label's defaults."""
    for name, value in own.items():
        if name not in _DEFAULT_FIELDS:
            raise ValueError(f"job {job.name!r} overrides {name!r}, not a label default")
        if name == "resources":
            value = _resources(value)
        elif name == "retry":
            value = _retry(value)
        elif name == "tags":
            value = dict(value)
        setattr(job, name, value)


def _header_from_json(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": data["name"],
        "submit_dir": data["submit_dir"],
        "graph_file": data["graph_file"],
        "repo": data["repo"],
        "output_run": data["output_run"],
        "site": SiteConfig(**data["site"]),
    }


def _decode_v2(data: dict[str, Any]) -> GenericWorkflow:
    """The workflow of a format-2 document (files by row, jobs as in format 1)."""
    names = [raw["name"] for raw in data["jobs"]]
    schemas = [(name, tuple(keys)) for name, keys in data["file_schemas"]]
    rows = data["files"]
    files = _file_rows(rows, [row[4] for row in rows], schemas, names)
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
