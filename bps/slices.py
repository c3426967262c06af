"""Per-job graph slices for transfer staging: each job is shipped a slice, not the whole graph.

With file transfer (HTCondor ``transfer_input_files``, Pegasus staging) the file a job
names with ``--graph`` is copied to its worker. Shipping the whole ``.qgraph`` costs every
job the size of the graph; one file per job would put 10^6 files in the submit
directory. Instead the jobs are cut, in workflow order, into slices of at most
``quanta_per_slice`` quanta (`supertask.graph.slice_file`: the header, tables and the
jobs' records, read by id): a few files, each the size of its own jobs' records. A job's
quanta are never split between slices, and its ``--graph`` argument is pointed at its
slice, so the translators ship what the arguments name and the job reads its records as
from the graph.

Written sequentially while the jobs are iterated; only the current slice's id table is
held. Shared staging needs none of this: jobs read their records from the graph in place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from .workflow import GenericWorkflow, Job

log = logging.getLogger(__name__)

SLICE_DIR = "slices"
#: quanta per slice by default (``site.slice_quanta``)
QUANTA_PER_SLICE = 4096
GRAPH_OPTION = "--graph"


def slice_name(index: int) -> str:
    """The file name of slice ``index`` (the jobs' file transfer names it so on the worker)."""
    return f"slice-{index:05d}.qslice"


def write_job_slices(
    graph_file: str | Path,
    jobs: Iterable[Job],
    submit_dir: str | Path,
    *,
    quanta_per_slice: int = QUANTA_PER_SLICE,
) -> int:
    """Write the slices of ``jobs`` under ``submit_dir/slices``; point each job's ``--graph`` at its own.

    Parameters
    ----------
    graph_file
        The whole graph the jobs' quantum ids refer to.
    jobs
        In workflow order; their ``arguments`` are changed in place.
    quanta_per_slice
        A slice is closed when adding the next job would exceed it (a job larger than
        this gets a slice of its own).

    Returns
    -------
    count : `int`
        The number of slices written.
    """
    from supertask.graph.slice_file import GraphRecords, SliceWriter

    if quanta_per_slice < 1:
        raise ValueError(f"quanta_per_slice must be at least 1, got {quanta_per_slice}")
    directory = Path(submit_dir).absolute() / SLICE_DIR
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    with GraphRecords(graph_file) as source:
        writer: SliceWriter | None = None
        for job in jobs:
            if writer is not None and len(writer) and len(writer) + len(job.quantum_ids) > quanta_per_slice:
                writer.close()
                writer = None
            if writer is None:
                writer = SliceWriter(directory / slice_name(count), source)
                count += 1
            for qid in job.quantum_ids:
                writer.add(qid)
            _point_graph_at(job, writer.path)
        if writer is not None:
            writer.close()
    log.info("wrote %d graph slices of at most %d quanta into %s", count, quanta_per_slice, directory)
    return count


def _point_graph_at(job: Job, path: str) -> None:
    args = job.arguments
    for i, arg in enumerate(args[:-1]):
        if arg == GRAPH_OPTION:
            args[i + 1] = path
            return
    raise ValueError(f"job {job.name!r} has no {GRAPH_OPTION} argument to point at its slice")


def job_graph(job: Job) -> str | None:
    """The graph file (or slice) a job's ``--graph`` argument names, if any."""
    args = job.arguments
    for i, arg in enumerate(args[:-1]):
        if arg == GRAPH_OPTION:
            return args[i + 1]
    return None


def refresh_job_slices(workflow: GenericWorkflow) -> int:
    """Rewrite the slices of a workflow whose graph file was rewritten since; return how many.

    A restart after fixing the graph in place (its pipeline or configs) must ship the
    fixed records: slices whose header or tables differ from the graph's are stale, and
    then every slice is written again with the same name and the same quanta. Nothing is
    written when they are current (or when the jobs read the graph itself).
    """
    from supertask.graph import file_format
    from supertask.graph.slice_file import GraphRecords, SliceWriter

    by_slice: dict[str, list[int]] = {}
    for job in workflow.jobs.values():
        path = job_graph(job)
        if path is not None and path != workflow.graph_file and Path(path).parent.name == SLICE_DIR:
            by_slice.setdefault(path, []).extend(job.quantum_ids)
    if not by_slice:
        return 0
    graph_file, graph_layout = file_format._open(workflow.graph_file)
    graph_file.close()

    def stale(path: str) -> bool:
        try:
            f, layout = file_format._open(path)
        except (OSError, file_format.GraphFileError):
            return True
        f.close()
        return (layout.header_digest, layout.tables_digest) != (
            graph_layout.header_digest,
            graph_layout.tables_digest,
        )

    if not any(stale(path) for path in by_slice):
        return 0
    with GraphRecords(workflow.graph_file) as source:
        for path, ids in by_slice.items():
            writer = SliceWriter(path, source)
            for qid in ids:
                writer.add(qid)
            writer.close()
    log.info("the graph %s changed: rewrote its %d slices", workflow.graph_file, len(by_slice))
    return len(by_slice)
