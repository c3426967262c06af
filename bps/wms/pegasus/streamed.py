"""The Pegasus documents of a streamed workflow, encoded straight from its columns.

Why
---
An unclustered prepare keeps its workflow as flat columns (`bps.workflow_stream`). Read
through ``workflow.jobs``, each pass makes a `~bps.workflow.Job` and its
`~bps.workflow.WorkflowFile` objects per job; the generic translator makes five such passes
(the resource check, the job map, the job documents, the transformation catalog, the
replica catalog), a dictionary per job document, use and replica, and encodes each: most
of the CPU of the Pegasus side of a prepare. Here the documents that grow with the workflow
(``compute.yml``, ``replicas.yml``, ``job_map.json``, ``outputs.map``) are encoded from the
columns. What every job of a label shares (its transformation, the arguments around its
quantum number and name, its profiles) is encoded once per label, by the generic
translator's own functions, from a job with placeholders for what differs; each job adds its
id, number, name and sorted ``uses`` to those pieces, and the text goes out a chunk of
`JOB_CHUNK` jobs at a time.

Same bytes
----------
What is written is what `bps.wms.pegasus.translator` writes for the same workflow (the
tests compare the two). `translate_streamed` checks what its shortcuts rely on and returns
``None`` when something does not hold, and the generic translator does the work:

- job names and logical file names use only ``[A-Za-z0-9._-]`` (`bps.names` makes them so):
  they need no JSON escaping or quoting, and ``uses`` entries sort as their names;
- no dataset's logical file name is the graph's or has the form of a job's manifest;
- no job name starts with ``--`` (it would read as an option of the job's command line);
- the final job reads no files;
- the first job of each label is what `bps.workflow_stream` makes (its arguments, the
  same graph and manifest directory for all) and encodes exactly as the generic
  translator encodes it (the per-label pieces are checked against it).

Overall inputs go into the replica catalog at their ``paths`` in the columns: prepare sets
an input registered off its template path to its registered path
(`bps.workflow_stream.StreamedWorkflow.set_input_path`), which is what the jobs'
``--input-locations`` files hold, so those files are not read back.
"""

from __future__ import annotations

import json
import os
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from itertools import accumulate, chain, repeat
from pathlib import Path
from typing import Any, cast

from ...column_runs import consecutive, one_each
from ...workflow import GenericWorkflow, Job
from ...workflow_stream import JobColumns, StreamedJobs
from . import catalogs
from .document import ReplicaDocument, WorkflowDocument, encode, merge
from .settings import DataConfiguration, PegasusSettings
from .translator import (
    _NEEDS_QUOTES,
    COMPUTE_FILE,
    COMPUTE_JOB_ID,
    STAGED_DIR,
    PegasusPlan,
    _graph_arguments,
    _graph_lfn,
    _graph_value,
    _job_document,
    _manifest_template,
    _unique_id,
    input_use,
    output_map_line,
    output_use,
    pegasus_arguments,
    pegasus_id,
    pegasus_name,
    root_workflow,
)

#: Replicas, dependencies, job-map entries or map lines encoded into one written chunk (~0.1 MB).
CHUNK = 1000
#: Compute jobs encoded into one written chunk (about 2 kB each, most of it their profiles: ~0.2 MB).
JOB_CHUNK = 100
#: Strings checked per regular-expression search (joined by newlines).
_CHECK_BATCH = 100_000

# Placeholders in the per-label documents: Pegasus id, quantum number, job name, uses;
# file name and URL in the replica entry. JSON writes the NUL as \u0000.
_ID, _QUANTUM, _NAME, _USES, _LFN, _URL = "\0I", "\0Q", "\0N", "\0U", "\0L", "\0F"
_PLACEHOLDER = re.compile(r"\\u0000([IQNULF])")

#: Plain names, one per line (one character class repeated: the fastest search there is)
_PLAIN_LINES = re.compile(r"[A-Za-z0-9._\n-]*")
_DIGITS_LINE = re.compile(r"\n[0-9]+\n")


def translate_streamed(
    workflow: GenericWorkflow,
    pegasus_dir: Path,
    settings: PegasusSettings,
    data_configuration: DataConfiguration,
    with_datastore: bool = True,
) -> PegasusPlan | None:
    """`bps.wms.pegasus.translator.translate` of a streamed workflow, from its columns.

    Returns ``None`` when the workflow breaks an assumption of the module docstring: the
    generic translator then translates it (the same files, more slowly).
    """
    jobs = cast(StreamedJobs, workflow.jobs)
    cols = jobs.columns()
    final = workflow.final
    if not len(cols.order) or (final is not None and final.inputs):
        return None
    graph_lfn = _graph_lfn(workflow.graph_file)
    prefix, suffix = _manifest_template()
    if not _names_are_plain(cols, graph_lfn, prefix, suffix):
        return None
    graph_args = _graph_arguments(workflow.graph_file, graph_lfn)
    firsts = first_jobs(cols)
    pids = _pegasus_ids(cols)
    encoder = _JobEncoder.make(
        cols, pids, [(j, jobs.job(j)) for j in firsts], graph_lfn, graph_args, workflow, settings
    )
    if encoder is None:
        return None

    job_map = StreamedJobMap(cols, pids)
    final_id = None
    if final is not None:
        final_id = _unique_id(pegasus_id(final.name), job_map)
        job_map.final = (final_id, final.name, final.label)
    compute_id = _unique_id(COMPUTE_JOB_ID, job_map)
    root = root_workflow(
        workflow, settings, data_configuration, pegasus_dir, compute_id, final_id, graph_args
    )
    compute = WorkflowDocument(
        name=pegasus_name(workflow.name) + "-compute",
        metadata={"output_run": workflow.output_run, "generic_name": workflow.name},
        jobs=encoder.chunks,
        dependencies=lambda: _dependency_chunks(cols, pids),
        encoded=True,
    )
    root_dir = str(catalogs.repo_root(workflow.repo))
    replicas = ReplicaDocument(
        encoded=lambda added: _replica_chunks(
            cols, workflow.graph_file, graph_lfn, settings.input_site, root_dir, added
        )
    )
    # The compute workflow is an input of the planned one: Pegasus finds it on the submit host.
    replicas.add_replica("local", COMPUTE_FILE, catalogs.file_url(pegasus_dir / COMPUTE_FILE))
    staged = os.path.join(str(Path(workflow.submit_dir).absolute()), STAGED_DIR)
    datastore: dict[str, str] = {}
    if with_datastore:
        lfns, paths = cols.lfns, cols.paths
        for j in cols.order:
            for k in cols.out_files[cols.out_start[j] : cols.out_start[j + 1]]:
                datastore[lfns[k]] = os.path.join(root_dir, paths[k])
    return PegasusPlan(
        workflow=compute,
        root=root,
        replica_catalog=replicas,
        transformation_catalog=catalogs.build_transformation_catalog(
            workflow, settings, [jobs.job(j).executable for j in firsts]
        ),
        site_catalog=catalogs.build_site_catalog(workflow, settings, data_configuration, pegasus_dir),
        properties=catalogs.build_properties(workflow, settings, data_configuration, pegasus_dir),
        settings=settings,
        data_configuration=data_configuration,
        graph_lfn=graph_lfn,
        job_map=job_map,
        final_id=final_id,
        compute_id=compute_id,
        output_locations=StreamedOutputs(cols, staged, encoder.manifest_dir, prefix, suffix),
        datastore_locations=datastore,
    )


def first_jobs(cols: JobColumns) -> list[int]:
    """The first job of each label in the workflow's order (labels in order of first appearance).

    Jobs of one label share everything but their name, quantum, files and extra arguments
    (`bps.workflow_stream`): what holds for these holds for all.
    """
    firsts: dict[int, int] = {}
    label_of, n_labels = cols.label_of, len(cols.labels)
    for j in cols.order:
        firsts.setdefault(label_of[j], j)
        if len(firsts) == n_labels:
            break
    return list(firsts.values())


def label_jobs(workflow: GenericWorkflow) -> list[Job] | None:
    """The first job of each label of a streamed workflow (`first_jobs`); ``None`` for another workflow."""
    columns = getattr(workflow.jobs, "columns", None)
    if columns is None:
        return None
    jobs = cast(StreamedJobs, workflow.jobs)
    return [jobs.job(j) for j in first_jobs(columns())]


def _line_batches(strings: Sequence[str]) -> Iterator[tuple[str, int]]:
    """``strings`` as text, each between newlines, a batch at a time (with the batch's size).

    A search or substring test over such text takes nanoseconds per character; a
    regular-expression search per string would take a microsecond or more each.
    """
    for start in range(0, len(strings), _CHECK_BATCH):
        batch = strings[start : start + _CHECK_BATCH]
        yield "\n" + "\n".join(batch) + "\n", len(batch)


def _all_plain(strings: Sequence[str], manifest: tuple[str, str] | None = None) -> bool:
    """Every string uses only ``[A-Za-z0-9._-]`` and does not start with ``--``; given the
    manifest names' ``(prefix, suffix)``, none has the form of a manifest's name."""
    manifest_like: Callable[[str], bool] | None = None
    if manifest is not None:
        prefix, suffix = manifest
        if prefix:
            pattern = re.compile("\n" + re.escape(prefix) + "[^\n]*" + re.escape(suffix) + "\n")
            manifest_like = lambda text: pattern.search(text) is not None  # noqa: E731
        else:
            marker = suffix + "\n"
            manifest_like = lambda text: marker in text  # noqa: E731
    for text, count in _line_batches(strings):
        # a string holding a newline is not plain: the count of newlines tells
        if text.count("\n") != count + 1 or not _PLAIN_LINES.fullmatch(text) or "\n--" in text:
            return False
        if manifest_like is not None and manifest_like(text):
            return False
    return True


def _all_their_own_ids(names: Sequence[str]) -> bool:
    """Every (plain) name is its own Pegasus id (`bps.wms.pegasus.translator.pegasus_id`):
    no dot, no underscore at either end, not all digits."""
    for text, _ in _line_batches(names):
        if "." in text or "\n_" in text or "_\n" in text or _DIGITS_LINE.search(text):
            return False
    return True


def _names_are_plain(cols: JobColumns, graph_lfn: str, prefix: str, suffix: str) -> bool:
    """Job names and logical file names as the module docstring assumes them."""
    return (
        _all_plain([graph_lfn], (prefix, suffix))
        and _all_plain(cols.names)
        and _all_plain(cols.lfns, (prefix, suffix))
        and graph_lfn not in cols.lfns
    )


def _pegasus_ids(cols: JobColumns) -> Sequence[str]:
    """Job number -> Pegasus id: the names themselves when each is its own id, as a rule."""
    names = cols.names
    if _all_their_own_ids(names):
        return names
    pids = [""] * len(names)
    taken: set[str] = set()
    for j in cols.order:  # ids are made unique in the workflow's order, as the generic translator does
        pid = _unique_id(pegasus_id(names[j]), taken)
        taken.add(pid)
        pids[j] = names[j] if pid == names[j] else pid
    return pids


def _pieces(text: str, kinds: str) -> list[str] | None:
    """``text`` cut at its placeholders, which must be ``kinds`` in that order; ``None`` otherwise."""
    parts = _PLACEHOLDER.split(text)
    if "".join(parts[1::2]) != kinds:
        return None
    return parts[0::2]


class _JobEncoder:
    """Encodes the compute jobs of ``compute.yml``: per-label pieces around each job's own values."""

    def __init__(self) -> None:
        self.cols: JobColumns
        self.pids: Sequence[str]
        self.head: Callable[[str, str], list[str]]
        self.skeleton: dict[int, Job] = {}
        self.document: Callable[[Job, str], dict[str, Any]]
        #: (label, extra arguments) -> the pieces of a job document around id, number, name, uses
        self.pieces: dict[tuple[int, tuple[str, ...] | None], list[str]] = {}
        self.graph_use = ""
        self.use_prefix = ""
        self.input_suffix = ""
        self.output_suffix = ""
        self.manifest_dir = ""
        self.manifest = ("", "")

    @classmethod
    def make(
        cls,
        cols: JobColumns,
        pids: Sequence[str],
        firsts: list[tuple[int, Job]],
        graph_lfn: str,
        graph_args: dict[str, str],
        workflow: GenericWorkflow,
        settings: PegasusSettings,
    ) -> _JobEncoder | None:
        """The encoder of ``cols``, given the first job of each label (`first_jobs`, each with its
        number); ``None`` when one of them is not what it expects or encodes differently."""
        self = cls()
        self.cols, self.pids = cols, pids
        arguments = firsts[0][1].arguments
        if len(arguments) < 8:
            return None
        graph, manifest_dir = arguments[1], arguments[7]

        def head(quantum: str, name: str) -> list[str]:
            """A job's arguments before those prepare adds (`bps.workflow_stream`)."""
            return ["--graph", graph, "--quantum", quantum, "--job", name, "--manifest-dir", manifest_dir]

        self.head = head
        site_cap, held = workflow.site.max_memory_mb, settings.held_timeout_s
        self.document = lambda job, pid: _job_document(job, pid, graph_lfn, graph_args, site_cap, held)
        input_pieces = _pieces(encode(input_use(_LFN)), "L")
        output_pieces = _pieces(encode(output_use(_LFN)), "L")
        if input_pieces is None or output_pieces is None or input_pieces[0] != output_pieces[0]:
            return None
        # One prefix: the entries sort as their file names, which sort after the closing quote.
        self.use_prefix, self.input_suffix = input_pieces
        self.output_suffix = output_pieces[1]
        _, manifest = pegasus_arguments(head(_QUANTUM, _NAME), graph_args)
        if manifest is None or len(manifest[1].split(_NAME)) != 2:
            return None
        self.manifest_dir = manifest[0]
        manifest_prefix, manifest_suffix = manifest[1].split(_NAME)
        self.manifest = (manifest_prefix, manifest_suffix)
        for j, job in firsts:
            if job.arguments != head(str(j), cols.names[j]) + list(cols.extra.get(j, ())):
                return None
            self.skeleton[cols.label_of[j]] = replace(job, name=_NAME, inputs=[], outputs=[])
        graph_value = _graph_value(firsts[0][1])
        self.graph_use = encode(
            input_use(graph_args.get(graph_value, graph_lfn) if graph_value else graph_lfn)
        )
        for j, job in firsts:
            try:
                encoded = "".join(self._encode([j]))
            except ValueError:
                return None
            if encoded != encode(self.document(job, pids[j])):
                return None
        return self

    def _pieces_of(self, label: int, extra: tuple[str, ...] | None) -> list[str]:
        """The pieces of the documents of label ``label``'s jobs with ``extra`` arguments."""
        key = (label, extra)
        pieces = self.pieces.get(key)
        if pieces is None:
            skeleton = self.skeleton[label]
            skeleton.arguments = self.head(_QUANTUM, _NAME) + list(extra or ())
            document = self.document(skeleton, _ID)
            document["uses"] = _USES
            found = _pieces(encode(document).replace('"\\u0000U"', "\\u0000U"), "IQNU")
            if found is None:
                raise ValueError(f"the document of a job of label {label} does not have its placeholders")
            found[3] += "["
            found[4] = "]" + found[4]
            pieces = self.pieces[key] = found
        return pieces

    def chunks(self) -> Iterator[str]:
        """The compute jobs' documents in the workflow's order, `JOB_CHUNK` jobs per chunk."""
        return self._encode(self.cols.order)

    def _encode(self, jobs: Sequence[int]) -> Iterator[str]:
        """The documents of ``jobs``, joined by commas, `JOB_CHUNK` jobs per chunk: each chunk
        at once where it can (`_encode_run`), else job by job (`_encode_each`)."""
        jobs = jobs if isinstance(jobs, array) else array("q", jobs)
        for at in range(0, len(jobs), JOB_CHUNK):
            chunk = jobs[at : at + JOB_CHUNK]
            text = self._encode_run(chunk)
            yield self._encode_each(chunk) if text is None else text

    def _encode_run(self, jobs: array[int]) -> str | None:
        """`_encode_each` of a run of consecutive jobs of one label and the same extra arguments,
        each reading one file and writing one (`bps.column_runs`: calibrate's), made by ``map``
        in C: each job's sorted ``uses`` by ``sorted`` of its four entries, and the chunk's text
        by one join of its label's pieces around each job's values. None for any other chunk."""
        c = self.cols
        first = consecutive(jobs)
        if first is None:
            return None
        k = len(jobs)
        a, b = one_each(c.in_start, first, k), one_each(c.out_start, first, k)
        if a is None or b is None or len(set(c.label_of[first : first + k])) != 1:
            return None
        extras = set(map(c.extra.get, jobs))
        if len(extras) != 1:
            return None
        p0, p1, p2, p3, p4 = self._pieces_of(c.label_of[first], extras.pop())
        lfns, names = c.lfns, list(map(c.names.__getitem__, jobs))
        head, tail = self.use_prefix, self.output_suffix
        inputs = map(head.__add__, map(lfns.__getitem__, c.in_files[a : a + k]))
        outputs = map(head.__add__, map(lfns.__getitem__, c.out_files[b : b + k]))
        manifests = map((head + self.manifest[0]).__add__, names)
        uses = map(
            ",".join,
            map(
                sorted,
                zip(
                    map(str.__add__, inputs, repeat(self.input_suffix)),
                    map(str.__add__, outputs, repeat(tail)),
                    repeat(self.graph_use),
                    map(str.__add__, manifests, repeat(self.manifest[1] + tail)),
                    strict=False,
                ),
            ),
        )
        # the pieces of every job in a row, as `_encode_each` makes them: one join for the chunk
        parts = list(
            chain.from_iterable(
                zip(
                    repeat("," + p0),
                    map(self.pids.__getitem__, jobs),
                    repeat(p1),
                    map(str, jobs),
                    repeat(p2),
                    names,
                    repeat(p3),
                    uses,
                    repeat(p4),
                    strict=False,
                )
            )
        )
        parts[0] = p0
        return "".join(parts)

    def _encode_each(self, jobs: Iterable[int]) -> str:
        """The documents of ``jobs``, joined by commas, one job at a time.

        Each is its label's pieces around its own id, number, name and ``uses`` (sorted by
        name: the entries sort as their names); the parts are joined once per chunk.
        """
        c = self.cols
        lfns, names, pids, label_of, extra = c.lfns, c.names, self.pids, c.label_of, c.extra
        in_start, in_files, out_start, out_files = c.in_start, c.in_files, c.out_start, c.out_files
        prefix, in_suffix, out_suffix = self.use_prefix, self.input_suffix, self.output_suffix
        graph_use = self.graph_use
        manifest_head, manifest_tail = prefix + self.manifest[0], self.manifest[1] + out_suffix
        pieces_of = self._pieces_of
        last: tuple[int, tuple[str, ...] | None] | None = None
        pieces: list[str] = []
        batch: list[str] = []
        for j in jobs:
            key = (label_of[j], extra.get(j))
            if key != last:  # consecutive jobs share a label and extra arguments, as a rule
                pieces, last = pieces_of(*key), key
            name = names[j]
            uses = [prefix + lfns[k] + in_suffix for k in in_files[in_start[j] : in_start[j + 1]]]
            uses += [prefix + lfns[k] + out_suffix for k in out_files[out_start[j] : out_start[j + 1]]]
            uses.append(graph_use)
            uses.append(manifest_head + name + manifest_tail)
            uses.sort()
            batch += (
                "," if batch else "",
                pieces[0],
                pids[j],
                pieces[1],
                str(j),
                pieces[2],
                name,
                pieces[3],
                ",".join(uses),
                pieces[4],
            )
        return "".join(batch)


def _dependency_chunks(cols: JobColumns, pids: Sequence[str]) -> Iterator[str]:
    """``jobDependencies``: each parent, in order of first appearance as a parent, with its sorted children."""
    n = len(cols.names)
    par_start, par_jobs = cols.par_start, cols.par_jobs
    count = array("q", bytes(8 * (n + 1)))
    seen = bytearray(n)
    parents = array("q")  # in order of first appearance
    for j in cols.order:
        a, b = par_start[j], par_start[j + 1]
        if a == b:
            continue
        for p in par_jobs[a:b]:
            count[p + 1] += 1
            if not seen[p]:
                seen[p] = 1
                parents.append(p)
    del seen
    start = array("q", accumulate(count))
    del count
    fill = array("q", start)
    children = array("q", bytes(8 * start[n]))
    for j in range(n):  # each parent's children in any order: they are sorted by id below
        for p in par_jobs[par_start[j] : par_start[j + 1]]:
            children[fill[p]] = j
            fill[p] += 1
    del fill
    batch: list[str] = []
    for p in parents:
        a, b = start[p], start[p + 1]
        if b - a == 1:  # most parents have one child
            batch.append('{"id":"' + pids[p] + '","children":["' + pids[children[a]] + '"]}')
        else:
            kids = sorted([pids[k] for k in children[a:b]])
            batch.append('{"id":"' + pids[p] + '","children":["' + '","'.join(kids) + '"]}')
        if len(batch) >= CHUNK:
            yield ",".join(batch)
            batch = []
    yield ",".join(batch)


def _replica_chunks(
    cols: JobColumns,
    graph_file: str,
    graph_lfn: str,
    site: str,
    root: str,
    added: dict[str, list[dict[str, str]]],
) -> Iterator[str]:
    """The graph file's replica, then each overall input's, in order of first reading."""
    yield encode(merge(site, graph_lfn, catalogs.file_url(graph_file), added))
    pieces = _pieces(encode(merge(site, _LFN, _URL, {})).replace('"\\u0000F"', "\\u0000F"), "LF")
    if pieces is None:
        raise ValueError("a replica entry does not have its placeholders")
    head, middle, tail = pieces
    root_slash = root if root.endswith("/") else root + "/"
    # catalogs.file_url of an absolute path (the root is absolute: `catalogs.repo_root`)
    file_url = ("file://").__add__ if root.startswith("/") else catalogs.file_url
    encode_string = json.encoder.encode_basestring  # what the encoder writes a string with
    lfns, paths, producer = cols.lfns, cols.paths, cols.producer
    in_start, in_files = cols.in_start, cols.in_files
    seen = bytearray(len(lfns))
    batch: list[str] = []
    for j in cols.order:
        for k in in_files[in_start[j] : in_start[j + 1]]:
            if producer[k] >= 0 or seen[k]:
                continue
            seen[k] = 1
            lfn, path = lfns[k], paths[k]
            url = file_url(path if path.startswith("/") else root_slash + path)  # os.path.join
            if lfn in added:
                batch.append(encode(merge(site, lfn, url, added)))
            else:
                batch.append(head + lfn + middle + encode_string(url) + tail)
            if len(batch) >= CHUNK:
                yield ",".join(batch)
                batch = []
    yield ",".join(batch)


class StreamedJobMap(Mapping[str, dict[str, str]]):
    """Pegasus id -> ``{"name": generic job name, "label": label}`` over the columns, then the final job.

    Writes ``job_map.json`` itself (`json_chunks`), as `bps.wms.pegasus.translator` writes a job map.
    """

    def __init__(self, cols: JobColumns, pids: Sequence[str]) -> None:
        self._cols = cols
        self._pids = pids
        #: the final job's (Pegasus id, name, label)
        self.final: tuple[str, str, str] | None = None
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self._cols.order) + (self.final is not None)

    def __iter__(self) -> Iterator[str]:
        pids = self._pids
        yield from (pids[j] for j in self._cols.order)
        if self.final is not None:
            yield self.final[0]

    def __contains__(self, pid: object) -> bool:
        return (self.final is not None and pid == self.final[0]) or pid in self._pids

    def __getitem__(self, pid: str) -> dict[str, str]:
        if self.final is not None and pid == self.final[0]:
            return {"name": self.final[1], "label": self.final[2]}
        if self._index is None:
            self._index = {p: j for j, p in enumerate(self._pids)}
        j = self._index[pid]
        return {"name": self._cols.names[j], "label": self._cols.labels[self._cols.label_of[j]]}

    def json_chunks(self) -> Iterator[str]:
        """``json.dumps(dict(self), separators=(",", ":"))`` in chunks."""
        c, pids = self._cols, self._pids
        names, label_of = c.names, c.label_of
        ends = [',"label":' + json.dumps(label) + "}" for label in c.labels]
        yield "{"
        batch: list[str] = []
        first = True
        for j in c.order:
            batch.append('"' + pids[j] + '":{"name":"' + names[j] + '"' + ends[label_of[j]])
            if len(batch) >= CHUNK:
                yield ("" if first else ",") + ",".join(batch)
                first, batch = False, []
        if self.final is not None:
            pid, name, label = self.final
            batch.append(
                json.dumps(pid) + ":" + json.dumps({"name": name, "label": label}, separators=(",", ":"))
            )
        if batch:
            yield ("" if first else ",") + ",".join(batch)
        yield "}"


class StreamedOutputs(Mapping[str, str]):
    """Output lfn -> the path it is staged out to: datasets to ``staged``, manifests to their directory.

    Writes ``outputs.map`` itself (`map_chunks`), as `bps.wms.pegasus.translator` writes it.
    """

    def __init__(self, cols: JobColumns, staged: str, manifest_dir: str, prefix: str, suffix: str) -> None:
        self._cols = cols
        self._staged = staged
        self._manifest_dir = manifest_dir
        self._manifest = (prefix, suffix)
        self._dirs: dict[str, str] | None = None

    def _manifest_lfn(self, j: int) -> str:
        return self._manifest[0] + self._cols.names[j] + self._manifest[1]

    def __iter__(self) -> Iterator[str]:
        c = self._cols
        for j in c.order:
            yield from (c.lfns[k] for k in c.out_files[c.out_start[j] : c.out_start[j + 1]])
            yield self._manifest_lfn(j)

    def __len__(self) -> int:
        return len(self._cols.out_files) + len(self._cols.order)

    def __getitem__(self, lfn: str) -> str:
        if self._dirs is None:
            manifests = {self._manifest_lfn(j) for j in self._cols.order}
            self._dirs = {name: self._manifest_dir if name in manifests else self._staged for name in self}
        return os.path.join(self._dirs[lfn], lfn)

    def map_chunks(self) -> Iterator[str]:
        """The lines of ``outputs.map``, sorted by lfn, in chunks."""
        c = self._cols
        prefix, suffix = self._manifest
        lfns = [c.lfns[k] for k in c.out_files]
        lfns += [prefix + name + suffix for name in c.names]
        if not lfns:
            yield "\n"
            return
        lfns.sort()
        staged_url = _url_prefix(self._staged)
        manifest_url = _url_prefix(self._manifest_dir)
        batch: list[str] = []
        for lfn in lfns:
            # no dataset's name has the form of a manifest's (checked before)
            manifest = lfn.endswith(suffix) and lfn.startswith(prefix)
            url = manifest_url if manifest else staged_url
            if url is None:  # a URL that must be quoted: the generic line
                directory = self._manifest_dir if manifest else self._staged
                batch.append(output_map_line(lfn, os.path.join(directory, lfn)))
            else:
                batch.append(lfn + " " + url + lfn + ' site="local"\n')
            if len(batch) >= CHUNK:
                yield "".join(batch)
                batch = []
        yield "".join(batch)


def _url_prefix(directory: str) -> str | None:
    """``file://`` URL of ``directory`` joined with a plain file name, less that name; ``None`` if it must be quoted."""
    url = catalogs.file_url(os.path.join(directory, "x"))
    return None if _NEEDS_QUOTES.search(url) else url[:-1]
