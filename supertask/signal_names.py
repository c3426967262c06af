"""What a death by signal means, for messages: shared by the executor and the batch reports.

A process killed by a signal reports a negative exit code (Python's ``multiprocessing``,
``subprocess``) or ``128 + N`` (shells, most workflow systems). A bare number makes
people guess; a segmentation fault reported as "out of memory?" sends them the wrong
way. This module imports nothing heavy, so batch jobs can use it at start-up.
"""

from __future__ import annotations

import signal

__all__ = ["describe_signal", "signal_of_exit_code"]

#: what usually sends the signals a task's process dies of
_MEANINGS = {
    signal.SIGSEGV: "segmentation fault: a crash in compiled code (a bug or a corrupt input)",
    signal.SIGBUS: "bus error: a bad memory access, e.g. a file truncated under a memory map",
    signal.SIGABRT: "aborted: a failed assertion or abort() in compiled code",
    signal.SIGFPE: "floating-point exception in compiled code",
    signal.SIGILL: "illegal instruction: code built for another CPU",
    signal.SIGKILL: "killed: often the out-of-memory killer or the batch system enforcing a limit",
    signal.SIGTERM: "terminated: stopped by an operator or the batch system",
    signal.SIGINT: "interrupted (Ctrl-C)",
}
if hasattr(signal, "SIGXCPU"):
    _MEANINGS[signal.SIGXCPU] = "CPU time limit exceeded"


def describe_signal(number: int) -> str:
    """``"signal 11 (SIGSEGV, segmentation fault: ...)"`` for a signal number."""
    try:
        sig = signal.Signals(number)
    except ValueError:
        return f"signal {number}"
    meaning = _MEANINGS.get(sig)
    return f"signal {number} ({sig.name}, {meaning})" if meaning else f"signal {number} ({sig.name})"


def signal_of_exit_code(code: int) -> int | None:
    """The signal behind an exit code: ``-N`` (Python) or ``128 + N`` (shells); None otherwise."""
    if code < 0:
        return -code
    if 128 < code < 128 + 65:
        return code - 128
    return None
