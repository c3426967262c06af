"""Write one file in a forked child process while this process writes others.

Why
---
``bps prepare`` ends by writing ``workflow.json`` and then the workflow system's files
(the HTCondor DAG, the Pegasus documents), one after the other on one core, although both
only read the finished workflow. A child made with `os.fork` shares the parent's memory
(copy on write), so it can write ``workflow.json`` from the same objects, with no copy
and no serialisation, while the parent writes the engine's files on another core.

When
----
Only where a fork is safe: POSIX (`os.fork` exists) and no other thread alive
(`threading.active_count` is 1), since a child of a threaded process may inherit a lock
held by a thread that does not exist in it. Native threads a library starts on its own
(numpy's BLAS pool, imported by a large streamed prepare) are not Python threads and are
not counted: they wait idle, and the child calls nothing of theirs (it only encodes JSON
and writes a file). Otherwise, or when the environment variable
``BPS_PREPARE_SEQUENTIAL`` is set to anything but ``""`` or ``"0"``, the two writes run one
after the other, in this process, in the same order.

Memory
------
``gc.freeze()`` before the fork moves every tracked object to the permanent generation:
neither process's collector then walks (and so copies) the shared pages. The parent
unfreezes them after the child has been reaped.

Failures
--------
The child reports an exception through a pipe (pickled, so the parent raises the same
type with the same message the sequential path would give) and exits with `os._exit`
(no ``atexit`` handlers, no flushing of buffers it shares with the parent). A child
killed by a signal becomes ``killed_error``. When the parent's own write fails (or it is
interrupted), it kills and reaps the child before re-raising: no orphan is left. Whichever
side failed, ``discard`` then removes what the child wrote or left behind (its file, finished
or not; its temporary file), in the sequential path too.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import resource
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

__all__ = ["SEQUENTIAL_ENV", "ChildUsage", "fork_is_safe", "write_alongside"]

log = logging.getLogger("bps.forked_write")

#: Set (to anything but "" or "0") to write one file after the other in this process.
SEQUENTIAL_ENV = "BPS_PREPARE_SEQUENTIAL"

T = TypeVar("T")


@dataclass(frozen=True)
class ChildUsage:
    """What the forked child used: CPU seconds and peak resident set size (bytes)."""

    pid: int
    cpu_seconds: float
    peak_rss_bytes: int


def fork_is_safe() -> bool:
    """Whether `write_alongside` forks: POSIX, a single thread, not switched off."""
    if os.environ.get(SEQUENTIAL_ENV, "") not in ("", "0"):
        return False
    return hasattr(os, "fork") and threading.active_count() == 1


def write_alongside(
    child_write: Callable[[], None],
    parent_work: Callable[[], T],
    *,
    discard: Callable[[], None],
    killed_error: Callable[[str], BaseException],
    usage: list[ChildUsage] | None = None,
) -> T:
    """Run ``child_write`` in a forked child while ``parent_work`` runs here; return its result.

    Parameters
    ----------
    child_write : callable
        Writes its file (atomically: a failure must leave nothing half-written).
    parent_work : callable
        Runs in this process meanwhile; its result is returned once the child succeeded.
    discard : callable
        Removes what the child wrote or left behind (its file, its temporary file);
        called, after the child was reaped, when either side failed.
    killed_error : callable
        Makes the exception raised when the child dies without reporting (killed by a
        signal), from a description such as ``"killed by signal 9"``.
    usage : `list` of `ChildUsage`, optional
        Receives the child's CPU time and peak RSS, when a child ran.

    Raises
    ------
    BaseException
        What ``parent_work`` raised (the child is then killed), else what ``child_write``
        raised (same type and message; `RuntimeError` naming them when it cannot be pickled),
        else ``killed_error(...)`` when the child died without reporting. Without a fork,
        exactly what the sequential calls raise.
    """
    if not fork_is_safe():
        try:
            child_write()
            return parent_work()
        except BaseException:
            discard()
            raise
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        _unfreeze(frozen_before)
        raise
    if pid == 0:  # pragma: no cover - the child; its effects are what the tests check
        _run_child(child_write, read_end, write_end)
    os.close(write_end)
    try:
        try:
            result = parent_work()
            report = _read_all(read_end)
            _, status, child_usage = os.wait4(pid, 0)
        except BaseException:
            _kill_and_reap(pid)
            discard()
            raise
    finally:
        os.close(read_end)
        _unfreeze(frozen_before)
    cpu = child_usage.ru_utime + child_usage.ru_stime
    # ru_maxrss is in KiB on Linux (bytes on macOS); pages shared with the parent count in both.
    scale = 1 if os.uname().sysname == "Darwin" else 1024
    measured = ChildUsage(pid=pid, cpu_seconds=cpu, peak_rss_bytes=child_usage.ru_maxrss * scale)
    if usage is not None:
        usage.append(measured)
    log.debug(
        "child %d wrote alongside: %.1f s CPU, peak RSS %.0f MB (parent's so far: %.0f MB)",
        pid,
        measured.cpu_seconds,
        measured.peak_rss_bytes / 2**20,
        parent_peak_rss_bytes() / 2**20,
    )
    if report:
        discard()
        raise _exception_from(report)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        discard()
        if os.WIFSIGNALED(status):
            raise killed_error(f"killed by signal {os.WTERMSIG(status)}")
        raise killed_error(f"exited with status {os.waitstatus_to_exitcode(status)}")
    return result


def _run_child(
    child_write: Callable[[], None], read_end: int, write_end: int
) -> NoReturn:  # pragma: no cover
    """The child: write, report any exception through the pipe, exit without cleanup."""
    code = 1
    try:
        os.close(read_end)
        try:
            child_write()
            code = 0
        except BaseException as err:
            _write_all(write_end, _report_of(err))
    finally:
        os._exit(code)


def _report_of(err: BaseException) -> bytes:
    """``err`` as bytes the parent turns back into an exception of the same type and message."""
    err.__traceback__ = None
    err.__context__ = None
    err.__cause__ = None
    try:
        data = pickle.dumps(err)
        pickle.loads(data)  # an exception with a custom constructor may not round-trip
        return data
    except Exception:
        return pickle.dumps(RuntimeError(f"{type(err).__name__}: {err}"))


def _exception_from(report: bytes) -> BaseException:
    err = pickle.loads(report)
    if isinstance(err, BaseException):
        return err
    return RuntimeError(f"the child process reported {err!r}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int) -> bytes:
    """Everything the child wrote, until it closes the pipe (it exits)."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _kill_and_reap(pid: int) -> None:
    """Stop the child and wait for it, so that it is no orphan and writes nothing more."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except ChildProcessError:
            return
        except InterruptedError:  # pragma: no cover - retried by Python since 3.5
            continue


def _unfreeze(frozen_before: int) -> None:
    """Undo our `gc.freeze` unless objects were already frozen by someone else."""
    if frozen_before == 0:
        gc.unfreeze()


def parent_peak_rss_bytes() -> int:
    """This process's peak RSS in bytes (for reports beside `ChildUsage`)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if os.uname().sysname == "Darwin" else peak * 1024
