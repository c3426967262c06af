"""Runs of consecutive jobs in a streamed workflow's columns, recognised in C.

The writers of a streamed workflow (`bps.workflow_io`, `bps.wms.pegasus.streamed`) go through
its jobs (`bps.workflow_stream.JobColumns`) a chunk at a time. In the workflow's order, the
jobs without parents come first, by number (calibrate's, most of the jobs); each reads one
file and writes one. Such a chunk is a run ``first .. first + count - 1`` of job numbers
whose files are one slice of ``in_files`` and one of ``out_files``: a writer can then
make its text by ``map`` over those slices, with no Python step per job. These two tests
tell such chunks apart by comparisons of arrays (in C); every other chunk goes job by job.
"""

from __future__ import annotations

from array import array

__all__ = ["consecutive", "one_each"]


def consecutive(jobs: array[int]) -> int | None:
    """``jobs[0]`` when ``jobs`` (not empty) are consecutive job numbers, else None."""
    first = jobs[0]
    if jobs[-1] - first != len(jobs) - 1 or jobs != array("q", range(first, first + len(jobs))):
        return None
    return first


def one_each(start: array[int], first: int, count: int) -> int | None:
    """``start[first]`` when each of the jobs ``first`` .. ``first + count - 1`` has exactly one
    entry in the column ``start`` indexes (``start`` counts up by one over them), else None:
    their entries are then the slice ``[start[first], start[first] + count)``."""
    at = start[first]
    if start[first + count] - at != count or start[first : first + count + 1] != array(
        "q", range(at, at + count + 1)
    ):
        return None
    return at
