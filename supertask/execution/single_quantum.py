"""Run one quantum with its log captured to a file.

Shared by the multiprocessing executor's workers and by batch jobs: the same code
runs a quantum on a laptop and on a cluster, so a failure looks the same in both.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..peak_memory import PeakMemory
from ..quantum import Quantum
from ..task import NoWorkFound
from .quantum_butler import QuantumButler, WrittenDataset

LOG_TAIL_LINES = 20


@dataclass
class QuantumOutcome:
    """What happened to one quantum."""

    quantum_id: int
    ok: bool
    no_work: bool = False
    written: list[WrittenDataset] = field(default_factory=list)
    error: str = ""
    error_type: str = ""
    log_file: str | None = None
    seconds: float = 0.0
    #: when it started (epoch seconds), for timelines
    started: float = 0.0
    #: its own peak resident memory in MB (`supertask.peak_memory`), None if not measured
    peak_memory_mb: float | None = None


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

    The outcome lists the files written, which the caller registers; on failure the
    error and the log file are reported and nothing is registered.
    """
    peak = PeakMemory()
    peak.start()
    start = time.perf_counter()
    butler.written = []
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
            log.info("no work for %s %r: %s", quantum.taskLabel, quantum.dataId, err)
        except Exception as err:  # a task failure is reported, not propagated
            outcome.error = "".join(traceback.format_exception(err)).rstrip()
            outcome.error_type = type(err).__name__
            log.error("quantum %s %r failed:\n%s", quantum.taskLabel, quantum.dataId, outcome.error)
        else:
            outcome.ok = True
            outcome.written = list(butler.written)
            log.info("done in %.3f s", time.perf_counter() - start)
    outcome.seconds = time.perf_counter() - start
    outcome.peak_memory_mb = peak.stop()
    return outcome
