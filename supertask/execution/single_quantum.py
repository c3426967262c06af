"""Run one quantum: the one runner of ``supertask run``, the local WMS and every batch job.

The multiprocessing executor's workers and ``bps.run_quantum`` (which the local WMS and
the HTCondor and Pegasus jobs start) call `run_quantum`, so a quantum runs the same way
on a laptop and on a cluster and a failure looks the same in both. The rules that
decide what happened live here and nowhere else:

- *no work* is an outcome: a task raising `NoWorkFound` succeeded with no outputs (what
  it wrote before giving up is dropped), and a quantum left without every dataset of
  some input, because the quanta making them found no work, has no work either
  (`without_missing_inputs`);
- a failure is classified by the type of its exception (`failure_kind`), never by its
  name: a missing file, an invalid configuration, or anything else. Batch jobs turn the
  kind into an exit code (``bps.exit_codes.of_failure``); the executor reports it.

Batch-only work (staging files in and out of a scratch directory, the job manifest)
is a layer around this module in ``bps``; this module imports nothing of ``bps``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ..config.errors import FieldValidationError
from ..peak_memory import PeakMemory
from ..quantum import Quantum
from ..repo.dataid import DataId
from ..task import NoWorkFound
from .quantum_butler import QuantumButler, WrittenDataset

LOG_TAIL_LINES = 20

#: failure kinds (`QuantumOutcome.failure`): an input file is missing (a retry may see it)
MISSING_INPUT = "missing_input"
#: the task's configuration is invalid (a retry cannot help)
CONFIG = "config"
#: anything else: a bug, or a transient problem (a retry may help)
UNEXPECTED = "unexpected"


def failure_kind(error: BaseException) -> str:
    """What kind of failure ``error`` is, by its type (subclasses included).

    `FileNotFoundError` is `MISSING_INPUT`; `FieldValidationError` (invalid or frozen
    config values) is `CONFIG`; everything else is `UNEXPECTED`. `NoWorkFound` is no
    failure and never reaches here.
    """
    if isinstance(error, FileNotFoundError):
        return MISSING_INPUT
    if isinstance(error, FieldValidationError):
        return CONFIG
    return UNEXPECTED


def without_missing_inputs(quantum: Quantum, missing: set[tuple[str, DataId]]) -> tuple[Quantum | None, str]:
    """The quantum minus inputs that will never exist, or ``(None, why)`` if it has no work.

    ``missing`` holds the keys of datasets whose quantum found no work. A quantum gets
    whatever other inputs exist; one left with none of some input (a single input, or a
    gathering input whose every member is gone) has no work either, and the reason says
    which input. The quantum itself is returned when it misses nothing.
    """
    if not missing or not any(d.key in missing for d in quantum.iterInputs()):
        return quantum, ""
    inputs = {name: [d for d in ds if d.key not in missing] for name, ds in quantum.inputs.items()}
    empty = sorted(name for name, ds in inputs.items() if not ds)
    if empty:
        return None, f"no {', '.join(empty)} input: the quanta making it found no work"
    return Quantum(
        quantum.taskLabel, quantum.dataId, inputs, quantum.outputs, id=quantum.id, task=quantum.task
    ), ""


class QuantumOutcome:
    """What happened to one quantum.

    Attributes
    ----------
    quantum_id : `int`
    ok : `bool`
        The task ran to the end; ``written`` lists its outputs.
    no_work : `bool`
        The task found no work (``error`` says why); nothing it wrote is kept.
    written : `list` [`WrittenDataset`]
    error, error_type : `str`
        The traceback (the reason, for no work) and the exception's class name.
    failure : `str`
        The `failure_kind` of a failure; '' otherwise.
    log_file : `str` or None
    seconds : `float`
    started : `float`
        When it started (epoch seconds), for timelines.
    peak_memory_mb : `float` or None
        Its own peak resident memory in MB (`supertask.peak_memory`), None if not measured.
    peak_memory_own : `bool`
        False when the process's high-water mark stood in for it (an upper bound).
    """

    __slots__ = (
        "quantum_id",
        "ok",
        "no_work",
        "written",
        "error",
        "error_type",
        "failure",
        "log_file",
        "seconds",
        "started",
        "peak_memory_mb",
        "peak_memory_own",
    )

    def __init__(
        self,
        quantum_id: int,
        ok: bool,
        no_work: bool = False,
        written: list[WrittenDataset] | None = None,
        error: str = "",
        error_type: str = "",
        failure: str = "",
        log_file: str | None = None,
        seconds: float = 0.0,
        started: float = 0.0,
        peak_memory_mb: float | None = None,
        peak_memory_own: bool = True,
    ):
        self.quantum_id = quantum_id
        self.ok = ok
        self.no_work = no_work
        self.written = written if written is not None else []
        self.error = error
        self.error_type = error_type
        self.failure = failure
        self.log_file = log_file
        self.seconds = seconds
        self.started = started
        self.peak_memory_mb = peak_memory_mb
        self.peak_memory_own = peak_memory_own

    def __getstate__(self) -> dict[str, Any]:  # sent from the executor's workers through a pipe
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        return "QuantumOutcome(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


def tail(path: str | Path | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(max(0, size - 64 * 1024))
            text = stream.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class _CaptureOutput:
    """Send logging and the process's stdout/stderr (file descriptors 1 and 2) to a file."""

    def __init__(self, path: Path | None):
        self.path = path

    def __enter__(self) -> _CaptureOutput:
        if self.path is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in __exit__
        self._saved = (os.dup(1), os.dup(2))
        os.dup2(self._file.fileno(), 1)
        os.dup2(self._file.fileno(), 2)
        # Python-level streams too: they need not be file descriptors 1 and 2 (e.g. under pytest).
        self._text = open(self._file.fileno(), "w", closefd=False, buffering=1)  # noqa: SIM115
        self._streams = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = self._text
        self._handler = logging.StreamHandler(self._text)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        # While the quantum runs its log file replaces the console handlers (which would
        # otherwise write into the same redirected stderr a second time), and the task's
        # loggers record INFO whatever the console's level.
        root = logging.getLogger()
        self._root_state = (list(root.handlers), root.level)
        root.handlers = [self._handler]
        root.setLevel(logging.INFO)
        self._task_loggers = []
        for name in ("supertask", "bps"):
            logger = logging.getLogger(name)
            self._task_loggers.append((logger, logger.level, logger.propagate))
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
            logger.propagate = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.path is None:
            return
        self._handler.flush()
        root = logging.getLogger()
        root.handlers, level = self._root_state
        root.setLevel(level)
        for logger, level, propagate in self._task_loggers:
            logger.setLevel(level)
            logger.propagate = propagate
        self._text.flush()
        sys.stdout, sys.stderr = self._streams
        self._text.close()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        os.close(self._saved[0])
        os.close(self._saved[1])
        self._file.close()


def run_quantum(task: Any, quantum: Quantum, butler: QuantumButler, log_file: Path | None) -> QuantumOutcome:
    """Run ``task.runQuantum(quantum, butler)``; never raises for a task failure.

    The outcome lists the files written, which the caller registers (the executor) or
    stages out (a batch job); on failure the error, its `failure_kind` and the log file
    are reported and nothing is kept. The butler accepts only the quantum's own outputs.
    With ``log_file`` None the quantum logs where the process logs (a batch job's log).
    """
    peak = PeakMemory()
    peak.start()
    start = time.perf_counter()
    butler.written = []
    butler.expected = {d.key for d in quantum.iterOutputs()}
    outcome = QuantumOutcome(quantum.id if quantum.id is not None else -1, ok=False, started=time.time())
    outcome.log_file = str(log_file) if log_file else None
    with _CaptureOutput(log_file):
        log = logging.getLogger(f"supertask.{quantum.taskLabel}")
        log.info("running %s %r", quantum.taskLabel, quantum.dataId)
        try:
            task.runQuantum(quantum, butler)
        except NoWorkFound as err:
            # An outcome, not a failure; whatever the task wrote before deciding is not registered.
            outcome.no_work = True
            outcome.error = str(err)
            outcome.error_type = type(err).__name__
            log.info("no work for %s %r: %s", quantum.taskLabel, quantum.dataId, err)
        except Exception as err:  # a task failure is reported, not propagated
            outcome.error = "".join(traceback.format_exception(err)).rstrip()
            outcome.error_type = type(err).__name__
            outcome.failure = failure_kind(err)
            log.error("quantum %s %r failed:\n%s", quantum.taskLabel, quantum.dataId, outcome.error)
        else:
            outcome.ok = True
            outcome.written = list(butler.written)
            log.info("done in %.3f s", time.perf_counter() - start)
    outcome.seconds = time.perf_counter() - start
    outcome.peak_memory_mb = peak.stop()
    outcome.peak_memory_own = not peak.per_process
    return outcome
