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

from .workflow import Job

log = logging.getLogger(__name__)

SLICE_DIR = "slices"
#: quanta per slice: a slice of the demo's records is ~1-2 MB at this size
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
