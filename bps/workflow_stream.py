"""An unclustered workflow built from quanta streamed out of the graph file, held compactly.

Why
---
`bps.workflow_builder.build_workflow` needs every quantum at once (clustering groups them)
and makes one `~bps.workflow.Job` and one `~bps.workflow.WorkflowFile` object per job and
dataset: with the loaded graph beside them, an unclustered prepare of 10^6 quanta held
3.9 GB. When every quantum is its own job nothing needs the whole graph: this module reads
the quanta one chunk at a time as plain records (`supertask.graph.file_format.iter_records`,
in id order, which is dependency order; no `Quantum`, `Dataset` or `DataId` is made) and
keeps, per job and per dataset, only flat columns (strings, small tuples and integer arrays).
Each distinct dataset's logical file name and template path are formatted once, by
formatters made once per (dataset type, data-ID keys). The workflow's ``jobs`` and ``parents`` are read-only
mappings over those columns that make each `Job` when it is read and forget it after, so
the translators, ``workflow.json`` and the checks stream through the jobs exactly as
through a built workflow, and write the same bytes (same names, order, files, parents).

What a prepare adds after the build (registered paths of overall inputs, the
``--input-locations`` / ``--input-checks`` arguments) goes into the columns too:
`StreamedWorkflow.set_input_path` and `StreamedWorkflow.add_arguments`.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, Sequence, ValuesView
from itertools import chain, compress, groupby, islice, repeat, starmap
from operator import itemgetter, not_, sub
from pathlib import Path
from typing import Any, NamedTuple, cast, overload

from supertask.gc_pause import gc_paused
from supertask.template_rows import escape_literal

from .names import lfn_formatter, lfns_formatter, safe_name, safe_names
from .workflow import GenericWorkflow, Job, RetryPolicy, WorkflowFile
from .workflow_builder import LOG_DIR, MANIFEST_DIR, BuildOptions, final_job

#: dataset (with ``datasetType``, ``dataId``) and its RUN -> path relative to the datastore root
TemplatePath = Callable[[Any, str], str]


class _Columns:
    """The flat storage of a streamed workflow: one entry per job and per dataset file.

    Jobs are numbered by quantum id (one job per quantum); files in order of first
    sighting. ``*_start`` arrays hold each job's slice into the flat index arrays.
    """

    def __init__(self) -> None:
        # jobs
        self.names: list[str] = []
        self.label_of = array("l")
        self.labels: list[str] = []
        self.in_start = array("q", [0])
        self.in_files = array("q")
        self.out_start = array("q", [0])
        self.out_files = array("q")
        self.par_start = array("q", [0])
        self.par_jobs = array("q")
        #: extra arguments per job (shared tuples), set after the build
        self.extra: dict[int, tuple[str, ...]] = {}
        #: job numbers in the workflow's order (parents first)
        self.order = array("q")
        # files
        self.lfns: list[str] = []
        self.paths: list[str] = []
        self.schema_of = array("l")
        self.schemas: list[tuple[str, tuple[str, ...]]] = []
        #: the dataset type object of each schema (to rebuild a `Dataset` for a registry look-up)
        self.types: list[Any] = []
        self.values: list[tuple[Any, ...]] = []
        #: data-ID values shared by the files' tuples: an int or a str keyed by itself (an int
        #: and a str are never equal), a value of another type by ``(type, value)`` here
        self.shared_plain: dict[Any, Any] = {}
        self.shared_values: dict[tuple[type, Any], Any] = {}
        self.producer = array("q")
        #: registry id of an overall input (-1: none, or a produced file)
        self.dataset_id = array("q")
        #: RUN an overall input was found in ("" for produced files)
        self.runs: list[str] = []


def base_arguments(graph_file: str, quantum: str, name: str, manifest_dir: str) -> list[str]:
    """A streamed job's command line before what prepare adds (`StreamedWorkflow.add_arguments`)."""
    return ["--graph", graph_file, "--quantum", quantum, "--job", name, "--manifest-dir", manifest_dir]


#: where `base_arguments` puts the quantum number and the job name
_QUANTUM_AT, _NAME_AT = 3, 5


class StreamedJobs(Mapping[str, Job]):
    """Job name -> `Job`, in the workflow's order; each `Job` is made when read (read-only).

    The writers of a prepare (``workflow.json``, the HTCondor DAG, the Pegasus documents)
    read the columns themselves instead (`columns`), making no `Job` per job: every job of
    one label shares its resources, retry policy, log subdirectory, throttle, tags and
    executable (`label_templates`), and differs from the others only by its name, quantum
    number, files, parents and the arguments prepare added.
    """

    def __init__(
        self, columns: _Columns, make: Callable[[int], Job], graph_file: str = "", manifest_dir: str = ""
    ) -> None:
        self._c = columns
        self._make = make
        self._index: dict[str, int] | None = None
        self._graph_file = graph_file
        self._manifest_dir = manifest_dir
        self._first: list[int] | None = None
        #: per schema: data-ID key -> position in the files' value tuples
        self._key_at: list[dict[str, int]] | None = None

    def __len__(self) -> int:
        return len(self._c.order)

    def __iter__(self) -> Iterator[str]:
        names = self._c.names
        return (names[j] for j in self._c.order)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name()

    def __getitem__(self, name: str) -> Job:
        return self._make(self._by_name()[name])

    def _by_name(self) -> dict[str, int]:
        if self._index is None:
            self._index = {name: j for j, name in enumerate(self._c.names)}
        return self._index

    def items(self) -> ItemsView[str, Job]:
        return _Items(self)

    def values(self) -> ValuesView[Job]:
        return _Values(self)

    def _iter_jobs(self) -> Iterator[Job]:
        make = self._make
        return (make(j) for j in self._c.order)

    # -- what the writers read besides the columns (`columns`): what jobs of a label share ---------

    def first_jobs(self) -> list[int]:
        """The first job (number) of each label in the workflow's order, labels in order of first appearance."""
        if self._first is None:
            first: dict[int, int] = {}
            label_of = self._c.label_of
            for j in self._c.order:
                label = label_of[j]
                if label not in first:
                    first[label] = j
                    if len(first) == len(self._c.labels):
                        break
            self._first = list(first.values())
        return self._first

    def label_templates(self) -> dict[int, Job]:
        """Label index -> the `Job` of its first job, in order of first appearance.

        Its resources, retry policy, log subdirectory, priority, throttle, tags and
        executable are those of every job of the label.
        """
        return {self._c.label_of[j]: self._make(j) for j in self.first_jobs()}

    def argument_template(self) -> tuple[list[str], int, int]:
        """``(arguments, i, k)``: job ``j``'s command line is ``arguments`` with ``str(j)`` at
        ``i`` and its name at ``k``, followed by what prepare added (``columns().extra``)."""
        return base_arguments(self._graph_file, "", "", self._manifest_dir), _QUANTUM_AT, _NAME_AT

    def common_value(self, j: int, keys: Sequence[str]) -> tuple[str, Any] | None:
        """The first of ``keys`` whose value all of job ``j``'s outputs (else its inputs) share, with
        the value: `bps.wms.htcondor.layout.unit_subdir` without making the files."""
        c = self._c
        files = (
            c.out_files[c.out_start[j] : c.out_start[j + 1]] or c.in_files[c.in_start[j] : c.in_start[j + 1]]
        )
        if not files:
            return None
        key_at = self._key_at
        if key_at is None:
            key_at = self._key_at = [{key: i for i, key in enumerate(keys)} for _, keys in c.schemas]
        values, schema_of = c.values, c.schema_of
        first = files[0]
        for key in keys:
            at = key_at[schema_of[first]].get(key)
            if at is None:
                continue
            value = values[first][at]
            if value is None:
                continue
            for k in files[1:]:
                other = key_at[schema_of[k]].get(key)
                if other is None or values[k][other] != value:
                    break
            else:
                return key, value
        return None

    def common_values(self, keys: Sequence[str]) -> Iterator[tuple[str, Any] | None]:
        """`common_value` of each job, in the workflow's order: one pass, and a job with
        one file (most) reads its value where its schema holds the first of ``keys``."""
        c = self._c
        values, schema_of = c.values, c.schema_of
        # per schema: (key, position) of each of ``keys`` its data IDs have, in the order of ``keys``
        present = [[(key, ks.index(key)) for key in keys if key in ks] for _, ks in c.schemas]
        out_start, out_files, in_start, in_files = c.out_start, c.out_files, c.in_start, c.in_files
        for j in c.order:
            a, b = out_start[j], out_start[j + 1]
            if a == b:
                a, b = in_start[j], in_start[j + 1]
                if a == b:
                    yield None
                    continue
                if b - a > 1:
                    yield self.common_value(j, keys)
                    continue
                k = in_files[a]
            elif b - a > 1:
                yield self.common_value(j, keys)
                continue
            else:
                k = out_files[a]
            row = values[k]
            for key, at in present[schema_of[k]]:
                if row[at] is not None:
                    yield key, row[at]
                    break
            else:
                yield None

    def positions(self) -> array[int]:
        """Job number -> the job's position in the workflow's order."""
        position = array("q", bytes(8 * len(self._c.order)))
        for i, j in enumerate(self._c.order):
            position[j] = i
        return position

    def labels(self) -> list[str]:
        """Distinct labels in first-appearance order (without making the jobs)."""
        labels, label_of = self._c.labels, self._c.label_of
        return [labels[label_of[j]] for j in self.first_jobs()]

    # -- read-only columns for the writers (`bps.workflow_io`, the HTCondor and Pegasus translators) --
    # They write workflow.json, the DAG, compute.yml, the replica catalog, job_map.json and
    # outputs.map from these, without a `Job` or `WorkflowFile` per job; they never change them.

    def job(self, j: int) -> Job:
        """The `Job` of job number ``j`` (made now, as reading ``jobs`` makes it)."""
        return self._make(j)

    def columns(self) -> JobColumns:
        """The columns of jobs and files, shared (not copied): read them, never change them."""
        c = self._c
        return JobColumns(
            order=c.order,
            names=c.names,
            label_of=c.label_of,
            labels=c.labels,
            in_start=c.in_start,
            in_files=c.in_files,
            out_start=c.out_start,
            out_files=c.out_files,
            par_start=c.par_start,
            par_jobs=c.par_jobs,
            lfns=c.lfns,
            paths=c.paths,
            producer=c.producer,
            extra=c.extra,
            schema_of=c.schema_of,
            values=c.values,
            schemas=c.schemas,
        )


class JobColumns(NamedTuple):
    """What `StreamedJobs.columns` shares: jobs by number, files by number.

    A job's input files are ``in_files[in_start[j]:in_start[j + 1]]`` (outputs and parents
    alike); ``producer[k]`` is the job number making file ``k`` (-1: an overall input, whose
    ``paths[k]`` is where it is registered); ``extra[j]`` the arguments prepare added to job
    ``j``'s command line after ``--manifest-dir``; ``values[k]`` the data-ID values of file
    ``k``, for the keys of ``schemas[schema_of[k]]`` (``(dataset type, keys)``).
    """

    order: array[int]
    names: Sequence[str]
    label_of: array[int]
    labels: Sequence[str]
    in_start: array[int]
    in_files: array[int]
    out_start: array[int]
    out_files: array[int]
    par_start: array[int]
    par_jobs: array[int]
    lfns: Sequence[str]
    paths: Sequence[str]
    producer: array[int]
    extra: Mapping[int, tuple[str, ...]]
    schema_of: array[int]
    values: Sequence[tuple[Any, ...]]
    schemas: Sequence[tuple[str, tuple[str, ...]]]


class _Items(ItemsView[str, Job]):
    _mapping: StreamedJobs

    def __iter__(self) -> Iterator[tuple[str, Job]]:
        return ((job.name, job) for job in self._mapping._iter_jobs())


class _Values(ValuesView[Job]):
    _mapping: StreamedJobs

    def __iter__(self) -> Iterator[Job]:
        return self._mapping._iter_jobs()


class _Files(Sequence[WorkflowFile]):
    """A job's input or output files, each `WorkflowFile` made when read.

    Many passes over a workflow read only its jobs' names, resources or arguments (the
    resource checks, the DAG's label defaults, the Pegasus dependencies): they make no file.
    """

    __slots__ = ("_files", "_make")

    def __init__(self, files: array[int], make: Callable[[int], WorkflowFile]) -> None:
        self._files = files
        self._make = make

    def __len__(self) -> int:
        return len(self._files)

    @overload
    def __getitem__(self, index: int) -> WorkflowFile: ...

    @overload
    def __getitem__(self, index: slice) -> list[WorkflowFile]: ...

    def __getitem__(self, index: int | slice) -> WorkflowFile | list[WorkflowFile]:
        if isinstance(index, slice):
            return [self._make(k) for k in self._files[index]]
        return self._make(self._files[index])

    def __iter__(self) -> Iterator[WorkflowFile]:
        return map(self._make, self._files)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(list(self))


class StreamedParents(Mapping[str, list[str]]):
    """Job name -> its parents' names (sorted), in the workflow's order (read-only)."""

    def __init__(self, columns: _Columns, jobs: StreamedJobs) -> None:
        self._c = columns
        self._jobs = jobs

    def __len__(self) -> int:
        return len(self._c.order)

    def __iter__(self) -> Iterator[str]:
        return iter(self._jobs)

    def __getitem__(self, name: str) -> list[str]:
        return self._parents(self._jobs._by_name()[name])

    def _parents(self, j: int) -> list[str]:
        c = self._c
        names = c.names
        return [names[p] for p in c.par_jobs[c.par_start[j] : c.par_start[j + 1]]]

    def items(self) -> ItemsView[str, list[str]]:
        return _ParentItems(self)


class _ParentItems(ItemsView[str, list[str]]):
    _mapping: StreamedParents

    def __iter__(self) -> Iterator[tuple[str, list[str]]]:
        parents = self._mapping
        names = parents._c.names
        return ((names[j], parents._parents(j)) for j in parents._c.order)


#: Jobs from which `StreamedWorkflow.input_reader_columns` works with numpy arrays: below,
#: the per-job Python steps cost less than importing numpy.
ARRAYS_FROM = 200_000


class StreamedWorkflow:
    """A `GenericWorkflow` over compact columns, and what prepare changes in them.

    ``workflow`` is the generic workflow every translator reads; its ``jobs`` and
    ``parents`` are `StreamedJobs` and `StreamedParents`.
    """

    def __init__(self, columns: _Columns, options: BuildOptions) -> None:
        self._c = columns
        c = columns
        resources = {
            label: options.cluster_resources.get(label) or _copy(options.resources_for(label))
            for label in c.labels
        }
        manifest_dir = str(Path(options.submit_dir) / MANIFEST_DIR)
        graph_file = options.graph_file
        retry: RetryPolicy = options.retry
        throttles = options.throttles
        # Jobs of one label share these (read-only) values, as built workflows' jobs do.
        per_label = [
            (
                label,
                resources[label],
                f"{LOG_DIR}/{label}",
                label if label in throttles else None,
                {"task_labels": label},
            )
            for label in c.labels
        ]
        names, lfns, paths, values = c.names, c.lfns, c.paths, c.values
        schemas, schema_of, producer = c.schemas, c.schema_of, c.producer
        in_start, in_files, out_start, out_files = c.in_start, c.in_files, c.out_start, c.out_files
        extra, label_of = c.extra, c.label_of

        def file(k: int) -> WorkflowFile:
            dataset_type, keys = schemas[schema_of[k]]
            p = producer[k]
            return WorkflowFile(
                lfn=lfns[k],
                dataset_type=dataset_type,
                data_id=dict(zip(keys, values[k], strict=True)),
                path=paths[k],
                producer=names[p] if p >= 0 else None,
            )

        def make(j: int) -> Job:
            name = names[j]
            label, res, log_subdir, throttle, tags = per_label[label_of[j]]
            arguments = base_arguments(graph_file, str(j), name, manifest_dir)
            more = extra.get(j)
            if more:
                arguments += more
            return Job(
                name=name,
                label=label,
                quantum_ids=[j],
                arguments=arguments,
                resources=res,
                retry=retry,
                inputs=cast("list[WorkflowFile]", _Files(in_files[in_start[j] : in_start[j + 1]], file)),
                outputs=cast("list[WorkflowFile]", _Files(out_files[out_start[j] : out_start[j + 1]], file)),
                log_subdir=log_subdir,
                throttle=throttle,
                tags=tags,
            )

        jobs = StreamedJobs(c, make, graph_file, manifest_dir)
        self.workflow = GenericWorkflow(
            name=options.name,
            submit_dir=options.submit_dir,
            graph_file=options.graph_file,
            repo=options.repo,
            output_run=options.output_run,
            site=options.site,
            # Read-only mappings: nothing after prepare changes a prepared workflow's jobs in place.
            jobs=cast("dict[str, Job]", jobs),
            parents=cast("dict[str, list[str]]", StreamedParents(c, jobs)),
            throttles=dict(options.throttles),
            final=final_job(options),
        )

    # -- what prepare reads and changes --------------------------------------------------------

    def overall_inputs(self) -> Iterator[tuple[int, str, int | None, str]]:
        """``(file number, lfn, registry id or None, RUN)`` of every overall input, each once."""
        c = self._c
        for k, p in enumerate(c.producer):
            if p < 0:
                ident = c.dataset_id[k]
                yield k, c.lfns[k], (ident if ident >= 0 else None), c.runs[k]

    def overall_input_columns(self) -> tuple[list[int], list[int], list[int]]:
        """`overall_inputs` as columns: ``(files, ids, unidentified)``.

        ``files`` are the file numbers of the overall inputs with a registry id, ``ids``
        those ids (in the same order); ``unidentified`` the file numbers of those with no
        id but a RUN (to be located by type and data ID). Made by C-level loops over the
        columns, not one Python step per input (a million raws at 10^6 quanta).
        """
        c = self._c
        inputs = list(compress(range(len(c.producer)), map((0).__gt__, c.producer)))
        ids = list(map(c.dataset_id.__getitem__, inputs))
        if not ids or min(ids) >= 0:
            return inputs, ids, []
        identified = list(map((-1).__lt__, ids))
        missing = list(compress(inputs, map(not_, identified)))
        unidentified = list(compress(missing, map(c.runs.__getitem__, missing)))
        return list(compress(inputs, identified)), list(compress(ids, identified)), unidentified

    def lfns(self, files: Iterable[int]) -> list[str]:
        """The logical file names of ``files`` (file numbers)."""
        return list(map(self._c.lfns.__getitem__, files))

    def paths(self, files: Iterable[int]) -> list[str]:
        """The paths of ``files`` (file numbers): `path` of each."""
        return list(map(self._c.paths.__getitem__, files))

    def dataset(self, k: int) -> Any:
        """The `~supertask.repo.dataset.Dataset` of overall input ``k`` (registry id and RUN included)."""
        from supertask.repo.dataid import DataId
        from supertask.repo.dataset import Dataset

        c = self._c
        schema = c.schema_of[k]
        ident = c.dataset_id[k]
        data_id = dict(zip(c.schemas[schema][1], c.values[k], strict=True))
        return Dataset(
            c.types[schema], DataId(data_id), id=ident if ident >= 0 else None, run=c.runs[k] or None
        )

    def path(self, k: int) -> str:
        return self._c.paths[k]

    def set_input_path(self, k: int, path: str) -> None:
        """File ``k`` (an overall input) is registered at ``path`` rather than its template path."""
        self._c.paths[k] = path

    def jobs_reading_inputs(self) -> Iterator[tuple[int, list[str]]]:
        """``(job number, [lfn of each of its overall inputs])`` in the workflow's order."""
        c = self._c
        lfns, producer, in_start, in_files = c.lfns, c.producer, c.in_start, c.in_files
        for j in c.order:
            mine = [lfns[k] for k in in_files[in_start[j] : in_start[j + 1]] if producer[k] < 0]
            if mine:
                yield j, mine

    def input_reader_columns(
        self, chunk: int = 65_536, arrays_from: int | None = None
    ) -> Iterator[tuple[list[int], list[int], list[str]]]:
        """`jobs_reading_inputs` as columns, ``chunk`` jobs at a time: ``(jobs, counts, lfns)``.

        ``jobs`` are the job numbers (workflow order) of the jobs reading overall inputs,
        ``counts`` how many each reads, ``lfns`` their names one job after the other. From
        ``arrays_from`` jobs (default `ARRAYS_FROM`) they are found by numpy array operations
        over a chunk of the columns rather than a Python step (and list) per job: a million
        jobs read raws at 10^6 quanta. Smaller workflows take the Python steps, which cost
        less than importing numpy (about 0.2 s). Memory beyond the columns: a few arrays
        the size of a chunk's input lists.
        """
        c = self._c
        if not len(c.order) or not len(c.in_files):
            return
        if len(c.order) < (ARRAYS_FROM if arrays_from is None else arrays_from):
            reading = self.jobs_reading_inputs()
            while part := list(islice(reading, chunk)):
                yield [j for j, _ in part], [len(n) for _, n in part], [lfn for _, n in part for lfn in n]
            return
        import numpy as np

        lfns = c.lfns
        files_of = np.frombuffer(c.in_files, dtype=np.int64)
        start_of = np.frombuffer(c.in_start, dtype=np.int64)
        producer = np.frombuffer(c.producer, dtype=np.int64)
        order = np.frombuffer(c.order, dtype=np.int64)
        for at in range(0, len(order), chunk):
            jobs = order[at : at + chunk]
            first, sizes = start_of[jobs], start_of[jobs + 1] - start_of[jobs]
            before = np.cumsum(sizes) - sizes  # entries of the chunk's earlier jobs
            # the chunk's input lists, job after job
            files = files_of[np.arange(int(sizes.sum()), dtype=np.int64) + np.repeat(first - before, sizes)]
            is_input = producer[files] < 0
            inputs_before = np.zeros(len(is_input) + 1, dtype=np.int64)
            np.cumsum(is_input, out=inputs_before[1:])
            counts = inputs_before[before + sizes] - inputs_before[before]
            reading = counts > 0
            yield (
                jobs[reading].tolist(),
                counts[reading].tolist(),
                list(map(lfns.__getitem__, files[is_input].tolist())),
            )

    def add_arguments(self, jobs: Iterable[int], arguments: Sequence[str]) -> None:
        """Append ``arguments`` to the command line of each of ``jobs`` (job numbers).

        Jobs that had the same arguments share the new tuple too: one per group of the
        input files (`bps.prepare`), not one per job.
        """
        more = tuple(arguments)
        extra = self._c.extra
        made: dict[tuple[str, ...], tuple[str, ...]] = {}
        for j in jobs:
            old = extra.get(j, ())
            new = made.get(old)
            if new is None:
                new = made[old] = old + more
            extra[j] = new


#: ``(dataset type, data-ID keys) -> format(rows, runs)``: the paths of datasets (``rows[i]``
#: their data-ID values, ``runs[i]`` their RUN) relative to the datastore root
#: (`supertask.repo.datastore.Datastore.paths_formatter`)
PathFormatter = Callable[
    [Any, tuple[str, ...]], Callable[[Sequence[tuple[Any, ...]], Sequence[str]], list[str]]
]


def build_streamed_workflow_file(
    graph_file: str | Path, options: BuildOptions, path_formatter: PathFormatter, chunk: int = 10_000
) -> StreamedWorkflow:
    """One job per quantum of a saved graph, streamed from the file; see the module docstring.

    The quanta are read as plain records (`supertask.graph.file_format.iter_records`), so no
    `Quantum`, `Dataset` or `DataId` is made; each distinct dataset's logical file name and
    path are formatted once, by formatters made once per (dataset type, data-ID keys). The
    result is what `build_streamed_workflow` makes of the graph's quanta.

    Raises
    ------
    supertask.graph.file_format.GraphFileError
        If the graph file is truncated or corrupted.
    ValueError
        As `build_streamed_workflow`.
    """
    from supertask.graph import file_format

    records = file_format.iter_records(graph_file, chunk)
    return _build(records, records.decoder, options, path_formatter)


def build_streamed_workflow(
    quanta: Iterable[Any], options: BuildOptions, template_path: TemplatePath
) -> StreamedWorkflow:
    """One job per quantum, from ``quanta`` in id (dependency) order; see the module docstring.

    The result is what `bps.workflow_builder.build_workflow` makes of the same quanta
    without clustering rules, except that an overall input's path is its template path in
    the RUN it was found in until `StreamedWorkflow.set_input_path` says otherwise.
    `build_streamed_workflow_file` does the same from a saved graph without making the
    quanta.

    Raises
    ------
    ValueError
        If an overall input has no RUN (the graph does not record where it was found), or
        the quanta are not numbered 0, 1, ... in dependency order.
    """
    from supertask.repo.dataid import DataId
    from supertask.repo.dataset import Dataset

    def path_formatter(
        dataset_type: Any, keys: tuple[str, ...]
    ) -> Callable[[Sequence[tuple[Any, ...]], Sequence[str]], list[str]]:
        def path(values: tuple[Any, ...], run: str) -> str:
            dataset = Dataset(dataset_type, DataId(dict(zip(keys, values, strict=True))), run=run)
            return template_path(dataset, run)

        return lambda rows, runs: list(map(path, rows, runs))

    plain = _PlainQuanta(quanta if isinstance(quanta, Sequence) else list(quanta))
    return _build(plain, plain, options, path_formatter)


class _PlainQuanta:
    """`Quantum` objects as the plain records `supertask.graph.file_format.iter_records` yields,
    with the tables their indices refer to (growing as the quanta are read)."""

    def __init__(self, quanta: Sequence[Any]) -> None:
        self._quanta = quanta
        self.labels: list[str] = []
        self.keysets: list[tuple[str, ...]] = []
        self.types: list[Any] = []
        self.runs: list[str] = []
        self._index: dict[Any, int] = {}

    def _intern(self, table: list[Any], kind: str, value: Any) -> int:
        i = self._index.get((kind, value))
        if i is None:
            i = self._index[(kind, value)] = len(table)
            table.append(value)
        return i

    def _datasets(self, by_type: dict[str, list[Any]]) -> list[Any]:
        result = []
        for datasets in by_type.values():
            for ds in datasets:
                data_id = dict(ds.dataId)
                result.append(
                    (
                        self._intern(self.types, "type", ds.datasetType),
                        self._intern(self.keysets, "keys", tuple(data_id)),
                        tuple(data_id.values()),
                        ds.id,
                        -1 if ds.run is None else self._intern(self.runs, "run", ds.run),
                    )
                )
        return result

    def __iter__(self) -> Iterator[tuple[int, int, tuple[Any, ...], list[Any], list[Any]]]:
        for j, q in enumerate(self._quanta):
            if q.id != j:
                raise ValueError(
                    f"quantum {q!r} has id {q.id}, expected {j}: stream the quanta of a saved graph"
                )
            data_id = dict(q.dataId)
            yield (
                self._intern(self.labels, "label", q.taskLabel),
                self._intern(self.keysets, "keys", tuple(data_id)),
                tuple(data_id.values()),
                self._datasets(q.inputs),
                self._datasets(q.outputs),
            )


class _Schema:
    """What the build keeps per (dataset type, data-ID keys) of the records' tables."""

    __slots__ = ("files", "index", "lfn", "lfns", "numbers", "paths")

    def __init__(
        self,
        index: int,
        lfn: Callable[[tuple[Any, ...]], str],
        lfns: Callable[[Sequence[tuple[Any, ...]]], list[str]],
        paths: Callable[[Sequence[tuple[Any, ...]], Sequence[str]], list[str]],
    ):
        self.index = index
        #: data-ID values -> file number (keyed by file name instead when told apart by name)
        self.files: dict[Any, int] = {}
        self.lfn = lfn
        self.lfns = lfns
        self.paths = paths
        #: the numbers of its files, whose names and paths are formatted together at the end
        self.numbers = array("q")


def _build(
    records: Iterable[tuple[int, int, tuple[Any, ...], list[Any], list[Any]]],
    tables: Any,
    options: BuildOptions,
    path_formatter: PathFormatter,
) -> StreamedWorkflow:
    """The streamed workflow of plain ``records`` (see `supertask.graph.record_codec.PlainQuantum`).

    A workflow names each dataset by its logical file name (`dataset_lfn`), and two data IDs
    that differ only in characters a file name cannot hold are one file. The build tells
    datasets apart by (type, keys, values) instead, formatting names only for new ones; if
    two of them then share a name, it builds again telling datasets apart by name.
    """
    # Every object the build makes stays alive (the columns) or is garbage without a cycle:
    # the cyclic collector's passes over the growing columns would free nothing.
    with gc_paused():
        c = _fill(records, tables, options, path_formatter, by_name=False)
        if len(set(c.lfns)) != len(c.lfns):
            c = _fill(records, tables, options, path_formatter, by_name=True)
        c.order = _static_order(c)
    return StreamedWorkflow(c, options)


def _fill(
    records: Iterable[tuple[int, int, tuple[Any, ...], list[Any], list[Any]]],
    tables: Any,
    options: BuildOptions,
    path_formatter: PathFormatter,
    by_name: bool,
) -> _Columns:
    """The columns of the records' jobs and files (all but the job order); see `_build`.

    The hot loop of a streamed prepare (a million quanta, a few datasets each): a job's
    name is made a chunk of jobs at a time (`_job_names`), and a new file's columns are
    appended in place, its data-ID values shared through one `dict.setdefault` run in C
    (keyed by the value itself when an int or a str: no ``(type, value)`` tuple each).
    """
    c = _Columns()
    labels_t, keysets_t, types_t, runs_t = tables.labels, tables.keysets, tables.types, tables.runs
    label_of_table: dict[int, int] = {}  # label index in the tables -> in the columns
    label_index: dict[str, int] = {}
    schema_of_table: dict[tuple[int, int], _Schema] = {}
    schema_index: dict[tuple[str, tuple[str, ...]], _Schema] = {}
    file_of: dict[str, int] = {}  # lfn -> file number, when telling datasets apart by name
    seen_names: set[str] = set()
    output_run = options.output_run
    names, label_of, lfns = c.names, c.label_of, c.lfns
    schema_of, values_of, producer = c.schema_of, c.values, c.producer
    dataset_id, runs_of = c.dataset_id, c.runs
    in_files, in_start, out_files, out_start = c.in_files, c.in_start, c.out_files, c.out_start
    par_jobs, par_start = c.par_jobs, c.par_start
    # One object per distinct data-ID value (the reader makes a new one for every dataset),
    # keyed by (type, value) so that 1 and True stay apart.
    share, share_plain, plain_types = c.shared_values.setdefault, c.shared_plain.setdefault, _PLAIN_TYPES

    def schema(t: int, ks: int) -> _Schema:
        dataset_type = types_t[t]
        keys = tuple(keysets_t[ks])
        key = (dataset_type.name, keys)
        found = schema_index.get(key)
        if found is None:
            found = schema_index[key] = _Schema(
                len(c.schemas),
                lfn_formatter(dataset_type.name, keys),
                lfns_formatter(dataset_type.name, keys),
                path_formatter(dataset_type, keys),
            )
            c.schemas.append(key)
            c.types.append(dataset_type)
        schema_of_table[(t, ks)] = found
        return found

    def new_file(s: _Schema, values: tuple[Any, ...], run: str, p: int, ident: int) -> int:
        """A new file: ``values`` of schema ``s`` in ``run``, made by job ``p`` (-1: none)."""
        k = len(values_of)
        values = tuple(
            [share_plain(v, v) if type(v) in plain_types else share((type(v), v), v) for v in values]
        )
        if by_name:
            lfn = s.lfn(values)
            file_of[lfn] = k
            lfns.append(lfn)
        else:
            s.files[values] = k
        s.numbers.append(k)
        schema_of.append(s.index)
        values_of.append(values)
        producer.append(p)
        dataset_id.append(ident)
        runs_of.append(run)
        return k

    def described(j: int, label: int, ks: int, values: tuple[Any, ...], d: Any = None) -> tuple[str, str]:
        """``(repr of dataset d, repr of quantum j)`` for a message, as the objects print."""
        from supertask.quantum import Quantum
        from supertask.repo.dataid import DataId
        from supertask.repo.dataset import Dataset

        quantum = Quantum(
            labels_t[label], DataId(dict(zip(keysets_t[ks], values, strict=True))), {}, {}, id=j
        )
        if d is None:
            return "", repr(quantum)
        t, dks, dvalues = d[0], d[1], d[2]
        dataset = Dataset(types_t[t], DataId(dict(zip(keysets_t[dks], dvalues, strict=True))))
        return repr(dataset), repr(quantum)

    def one_to_one(batch: list[Any], first: int) -> bool:
        """Add the jobs of ``batch`` at once if every one reads one overall input and writes one
        new file, both of one schema for all: what the loop below does, in C; else False.

        Most chunks of a large graph are such (calibrate: one raw read, one calexp written).
        Anything else (a file seen before, an input without RUN, another shape) is left to
        the loop, which gives its errors.
        """
        if by_name or set(map(len, map(itemgetter(3), batch))) != {1}:
            return False
        if set(map(len, map(itemgetter(4), batch))) != {1} or len(set(map(itemgetter(0), batch))) != 1:
            return False
        # the datasets' fields as columns, each dataset visited once (`PlainDataset`: five fields)
        out_types, out_keys, out_values, _, _ = zip(
            *map(itemgetter(0), map(itemgetter(4), batch)), strict=True
        )
        in_types, in_keys, in_values, ids, in_runs = zip(
            *map(itemgetter(0), map(itemgetter(3), batch)), strict=True
        )
        if (
            len(set(out_types)) != 1
            or len(set(out_keys)) != 1
            or len(set(in_types)) != 1
            or len(set(in_keys)) != 1
        ):
            return False
        so, si = schema(out_types[0], out_keys[0]), schema(in_types[0], in_keys[0])
        run_indices = set(in_runs)
        if so is si or min(run_indices) < 0 or not all(runs_t[r] for r in run_indices):
            return False
        m = len(batch)
        if not (
            so.files.keys().isdisjoint(out_values)
            and si.files.keys().isdisjoint(in_values)
            and len(set(out_values)) == m == len(set(in_values))
        ):
            return False
        label = batch[0][0]
        mine = label_of_table.get(label)
        if mine is None:
            mine = new_label(label)
        out_rows, in_rows = shared_rows(out_values), shared_rows(in_values)
        k0 = len(values_of)
        out_numbers, in_numbers = range(k0, k0 + 2 * m, 2), range(k0 + 1, k0 + 2 * m, 2)
        so.files.update(zip(out_rows, out_numbers, strict=True))
        si.files.update(zip(in_rows, in_numbers, strict=True))
        so.numbers.extend(out_numbers)
        si.numbers.extend(in_numbers)
        # a job's output, then its input: the numbers the loop gives them
        schema_of.extend(array("l", [so.index, si.index]) * m)
        values_of.extend(chain.from_iterable(zip(out_rows, in_rows, strict=True)))
        producer.extend(chain.from_iterable(zip(range(first, first + m), repeat(-1))))
        if None in ids:
            ids = tuple([-1 if ident is None else ident for ident in ids])
        dataset_id.extend(chain.from_iterable(zip(repeat(-1), ids)))
        runs_of.extend(chain.from_iterable(zip(repeat(""), map(runs_t.__getitem__, in_runs))))
        label_of.extend(repeat(mine, m))
        n_out, n_in = len(out_files), len(in_files)
        out_files.extend(out_numbers)
        out_start.extend(range(n_out + 1, n_out + m + 1))
        in_files.extend(in_numbers)
        in_start.extend(range(n_in + 1, n_in + m + 1))
        par_start.extend(repeat(len(par_jobs), m))
        return True

    def new_label(label: int) -> int:
        """The columns' index of the tables' label ``label``, first met (the caller looks up
        `label_of_table` itself: one dictionary look-up per job on the hot path)."""
        task = labels_t[label]
        mine = label_index.get(task)
        if mine is None:
            mine = label_index[task] = len(c.labels)
            c.labels.append(task)
        label_of_table[label] = mine
        return mine

    def known_inputs(inputs: list[Any], outs: list[int]) -> list[int] | None:
        """The file numbers of ``inputs`` if all are of one schema, seen before, distinct and
        none of the job's outputs (a warp's calexps, a coadd's warps), in C; else None."""
        if len(set(map(itemgetter(0, 1), inputs))) != 1:
            return None
        d = inputs[0]
        s = schema_of_table.get((d[0], d[1])) or schema(d[0], d[1])
        found = list(map(s.files.get, map(itemgetter(2), inputs)))
        distinct = set(found)
        if None in distinct or len(distinct) != len(found) or not distinct.isdisjoint(outs):
            return None
        return cast("list[int]", found)

    def shared_rows(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """``rows`` (of one width) with their values shared as ``new_file`` shares them, in C."""
        width = len(rows[0])
        if not width or set(map(len, rows)) != {width}:
            return [
                tuple([share_plain(v, v) if type(v) in plain_types else share((type(v), v), v) for v in row])
                for row in rows
            ]
        flat = list(chain.from_iterable(rows))
        if plain_types.issuperset(map(type, flat)):
            values = list(map(share_plain, flat, flat))
        else:
            values = [share_plain(v, v) if type(v) in plain_types else share((type(v), v), v) for v in flat]
        return list(zip(*[iter(values)] * width))  # noqa: B905 - a multiple of width

    stream = iter(records)
    first = 0
    while batch := list(islice(stream, _CHUNK)):
        batch_names = _job_names(batch, labels_t, seen_names, first)
        names += batch_names
        if one_to_one(batch, first):
            first += len(batch)
            continue
        for j, name, (label, ks, values, inputs, outputs) in zip(
            range(first, first + len(batch)), batch_names, batch, strict=True
        ):
            mine = label_of_table.get(label)
            if mine is None:
                mine = new_label(label)
            label_of.append(mine)
            if len(outputs) == 1 and len(inputs) < 2 and not by_name:
                # Most jobs (calibrate: one raw read, one calexp written): the loops below, without
                # their lists and set.
                d = outputs[0]
                s = schema_of_table.get((d[0], d[1])) or schema(d[0], d[1])
                k = s.files.get(d[2], -1)
                if k < 0:
                    k = new_file(s, d[2], "", j, -1)
                elif producer[k] != j:
                    ds_repr, _ = described(j, label, ks, values, d)
                    raise ValueError(_two_producers(ds_repr, names[producer[k]], name))
                out_files.append(k)
                out_start.append(len(out_files))
                if inputs:
                    d = inputs[0]
                    s = schema_of_table.get((d[0], d[1])) or schema(d[0], d[1])
                    i = s.files.get(d[2], -1)
                    if i < 0:
                        run = runs_t[d[4]] if d[4] >= 0 else None
                        if not run:
                            ds_repr, q_repr = described(j, label, ks, values, d)
                            raise ValueError(_no_run(ds_repr, q_repr))
                        in_files.append(new_file(s, d[2], run, -1, -1 if d[3] is None else d[3]))
                    elif i != k:
                        if producer[i] >= 0:
                            par_jobs.append(producer[i])
                        in_files.append(i)
                in_start.append(len(in_files))
                par_start.append(len(par_jobs))
                continue
            outs: list[int] = []
            for d in outputs:
                s = schema_of_table.get((d[0], d[1])) or schema(d[0], d[1])
                k = file_of.get(s.lfn(d[2]), -1) if by_name else s.files.get(d[2], -1)
                if k < 0:
                    outs.append(new_file(s, d[2], "", j, -1))
                elif producer[k] != j:
                    ds_repr, _ = described(j, label, ks, values, d)
                    raise ValueError(_two_producers(ds_repr, names[producer[k]], name))
                elif k not in outs:
                    outs.append(k)
            known = known_inputs(inputs, outs) if len(inputs) > 2 and not by_name else None
            if known is not None:
                ins, parents = known, set(map(producer.__getitem__, known))
                parents.discard(-1)
            else:
                ins, parents = [], set()
            for d in inputs if known is None else ():
                s = schema_of_table.get((d[0], d[1])) or schema(d[0], d[1])
                k = file_of.get(s.lfn(d[2]), -1) if by_name else s.files.get(d[2], -1)
                if k < 0:
                    run = runs_t[d[4]] if d[4] >= 0 else None
                    if not run:
                        ds_repr, q_repr = described(j, label, ks, values, d)
                        raise ValueError(_no_run(ds_repr, q_repr))
                    ins.append(new_file(s, d[2], run, -1, -1 if d[3] is None else d[3]))
                elif k not in outs and k not in ins:
                    if producer[k] >= 0:
                        parents.add(producer[k])
                    ins.append(k)
            in_files.extend(ins)
            in_start.append(len(in_files))
            out_files.extend(outs)
            out_start.append(len(out_files))
            if parents:
                par_jobs.extend(sorted(parents, key=names.__getitem__) if len(parents) > 1 else parents)
            par_start.append(len(par_jobs))
        first += len(batch)
    _name_files(c, schema_index.values(), output_run, by_name)
    return c


def _two_producers(ds_repr: str, first: str, second: str) -> str:
    """The message refusing a dataset that jobs ``first`` and ``second`` both write."""
    return f"{ds_repr} is produced by two quanta: {first} and {second}"


def _no_run(ds_repr: str, q_repr: str) -> str:
    return (
        f"input {ds_repr} of {q_repr} is made by no quantum and has no RUN: the graph must record where "
        "each overall input was found; rebuild it"
    )


#: quanta whose job names `_fill` makes at once
_CHUNK = 10_000


def _job_names(
    batch: Sequence[tuple[int, int, tuple[Any, ...], Any, Any]],
    labels: Sequence[str],
    seen: set[str],
    first: int,
) -> list[str]:
    """The job names of ``batch`` (quanta ``first``, ``first + 1``, ...), remembered in ``seen``.

    A job is named by its label and data-ID values (`bps.names.safe_name`); a name taken
    by an earlier job gets ``_q<quantum number>``. Worked out for the whole batch in C
    (`bps.names.safe_names`, set operations) unless some name is taken, which is rare.
    """
    texts, safe = _job_texts(batch, labels)
    named = texts if safe else safe_names(texts)
    if len(set(named)) == len(named) and seen.isdisjoint(named):
        seen.update(named)
        return named
    result = []
    for j, name in enumerate(named, first):
        if name in seen:
            name = f"{name}_q{j}"
        seen.add(name)
        result.append(name)
    return result


def _job_texts(
    batch: Sequence[tuple[int, int, tuple[Any, ...], Any, Any]], labels: Sequence[str]
) -> tuple[list[str], bool]:
    """``label_value1_value2...`` of each quantum of ``batch``, and whether they are all safe
    names already (`bps.names.safe_name` would leave each as it is).

    One ``str.format`` run in C per quantum when they share a label and data-ID keys and
    every value is an int or a str (whose ``format(v, "")`` is ``str(v)``), as in a chunk of
    one task's quanta. Such texts are safe when the label and each distinct str value are
    (an int's text is digits and ``-``): checked once per distinct value, not once per text
    by a regular expression.
    """
    label_ks = set(map(itemgetter(0, 1), batch))
    rows = list(map(itemgetter(2), batch))
    if len(label_ks) == 1 and set(map(type, chain.from_iterable(rows))) <= _PLAIN_TYPES:
        widths = set(map(len, rows))
        if len(widths) == 1:
            label = labels[batch[0][0]]
            template = escape_literal(label) + "_{}" * widths.pop()
            texts = list(starmap(template.format, rows))
            # ints and strs are never equal, so the set keeps every distinct str
            safe = safe_name(label) == label and all(
                safe_name(v) == v for v in set(chain.from_iterable(rows)) if type(v) is str
            )
            return texts, safe
    join = "_".join
    return [join([labels[r[0]], *map(str, r[2])]) for r in batch], False


_PLAIN_TYPES = frozenset((int, str))


def _name_files(c: _Columns, schemas: Iterable[_Schema], output_run: str, named: bool) -> None:
    """Each file's path (and lfn, unless ``named`` already), a schema's files at once.

    The formatters of many (`bps.names.lfns_formatter`, `Datastore.paths_formatter`) format
    a file in C where a call per file would cost more than the formatting itself; the
    names are put in place by ``map(list.__setitem__, ...)``, in C too.
    """
    n = len(c.values)
    lfns = c.lfns if named else [""] * n
    paths = [""] * n
    values, runs = c.values, c.runs
    for s in schemas:
        numbers = s.numbers
        rows = list(map(values.__getitem__, numbers))
        s_runs = list(map(runs.__getitem__, numbers))
        if "" in s_runs:
            s_runs = [run or output_run for run in s_runs]
        _scatter(paths, numbers, s.paths(rows, s_runs))
        if not named:
            _scatter(lfns, numbers, s.lfns(rows))
        s.numbers = array("q")
    c.lfns, c.paths = lfns, paths


def _scatter(target: list[str], numbers: Sequence[int], texts: Sequence[str]) -> None:
    """``target[numbers[i]] = texts[i]`` for each ``i``, in C."""
    if len(texts) != len(numbers):
        raise ValueError(f"{len(texts)} names formatted for {len(numbers)} files")
    deque(map(target.__setitem__, numbers, texts), maxlen=0)


def _static_order(c: _Columns) -> array[int]:
    """Jobs in the order `bps.clustering.order_clusters` gives them (``graphlib``'s static order).

    ``graphlib.TopologicalSorter`` over jobs added in job-number order yields the jobs
    without parents first, then, batch after batch, each job as soon as its last parent
    is done, visiting a job's children in the order they were added: first in, first out
    (`_kahn_order` does exactly that). Batch ``w + 1`` is the jobs whose longest chain of
    ancestors has ``w + 1`` jobs; within it a job comes after the one whose last parent (in
    the order) comes first, ties in job-number order. When every parent has a smaller number
    than its child (the graph file's id order is dependency order), that is worked out here
    with no step per job without parents (most jobs: the first task's) and no step per
    parent-child link: C-level passes, and per other job a ``max`` over its parents' batches
    and one over their positions. Integer arrays: ``graphlib``'s per-node objects for 10^6
    jobs cost hundreds of MB.
    """
    n = len(c.names)
    par_start, par_jobs = c.par_start, c.par_jobs
    n_parents = array("q", map(sub, islice(par_start, 1, None), par_start))
    order = array("q", compress(range(n), map(not_, n_parents)))
    if len(order) == n:
        return order
    later = list(compress(range(n), n_parents))
    batch = array("q", bytes(8 * n))
    for j in later:
        parents = par_jobs[par_start[j] : par_start[j + 1]]
        if max(parents) >= j:
            return _kahn_order(c)
        batch[j] = 1 + max(map(batch.__getitem__, parents))
    position = array("q", bytes(8 * n))
    deque(map(position.__setitem__, order, range(len(order))), maxlen=0)
    for _, group in groupby(sorted(later, key=batch.__getitem__), key=batch.__getitem__):
        jobs = list(group)
        last = [max(map(position.__getitem__, par_jobs[par_start[j] : par_start[j + 1]])) for j in jobs]
        jobs = list(map(jobs.__getitem__, sorted(range(len(jobs)), key=last.__getitem__)))
        deque(map(position.__setitem__, jobs, range(len(order), len(order) + len(jobs))), maxlen=0)
        order.extend(jobs)
    return order


def _kahn_order(c: _Columns) -> array[int]:
    """`_static_order` as ``graphlib`` works it out (first in, first out), one step per job and
    per link: for parents numbered after their children, and to refuse a cycle."""
    n = len(c.names)
    remaining = array("q", bytes(8 * n))
    n_children = array("q", bytes(8 * (n + 1)))
    for j in range(n):
        start, end = c.par_start[j], c.par_start[j + 1]
        remaining[j] = end - start
        for p in c.par_jobs[start:end]:
            n_children[p + 1] += 1
    for j in range(n):
        n_children[j + 1] += n_children[j]
    child_start = n_children
    children = array("q", bytes(8 * child_start[n]))
    fill = array("q", child_start[:n])
    for j in range(n):  # children of each job in job-number order, as graphlib appends them
        for p in c.par_jobs[c.par_start[j] : c.par_start[j + 1]]:
            children[fill[p]] = j
            fill[p] += 1
    del fill
    order = array("q")
    ready = deque(j for j in range(n) if remaining[j] == 0)
    while ready:
        j = ready.popleft()
        order.append(j)
        for child in children[child_start[j] : child_start[j + 1]]:
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
    if len(order) != n:
        raise ValueError("the quanta's jobs depend on each other in a cycle: rebuild the graph")
    return order


def _copy(resources: Any) -> Any:
    """The resources of a one-quantum cluster (`bps.workflow_builder._combine` of one)."""
    from .workflow_builder import _combine

    return _combine([resources])
