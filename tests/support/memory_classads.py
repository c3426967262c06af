"""Memory-escalation expressions as the schedd sees them, evaluated by the real ClassAd library.

Shared by the HTCondor tests (the DAG's submit descriptions) and the Pegasus tests (``condor``
profiles, which ``pegasus-plan`` writes as ``key = value`` lines of each job's submit file).
The path is the one a real submission takes: the submit text is parsed by ``htcondor2.Submit``
(which expands macros such as ``$(bps_memory:2048)`` to their defaults), each value is parsed
by ``classad2`` into an expression, and the expressions are evaluated in a job ClassAd
describing one moment of the job's life:

- `first_start`: the job is idle and has never run;
- `memory_hold`: it ran ``starts`` times and is now held for memory (code 34); the previous
  releases were memory releases, so ``RequestMemory`` is what the held attempt ran with;
- `released`: the moment after a release, the request the next start will match with.

`Outcome` holds what the schedd would do: the request, and whether ``periodic_release`` and
``periodic_remove`` are true. `run_until_done` chains the moments like the schedd for a job
whose peak memory is fixed (as ``tests/support/dagman_runner.py`` does for whole DAGs).
"""

from __future__ import annotations

from dataclasses import dataclass

import classad2
import htcondor2

#: The three submit commands of memory escalation.
COMMANDS = ("request_memory", "periodic_release", "periodic_remove")
IDLE, RUNNING, HELD = 1, 2, 5
MEMORY_HOLD_CODE = 34


def expand_submit(text: str) -> dict[str, str]:
    """The three commands of a submit description (``key = value`` lines), macros expanded.

    Raises if the text is not a submit description or a command is missing.
    """
    sub = htcondor2.Submit(text)
    missing = [key for key in COMMANDS if key not in sub]
    if missing:
        raise AssertionError(f"submit description lacks {missing}: {text!r}")
    return {key: sub.expand(key) for key in COMMANDS}


def submit_text(commands: dict[str, str]) -> str:
    """``key = value`` lines, as ``pegasus-plan`` writes a job's ``condor`` profiles."""
    return "".join(f"{key} = {value}\n" for key, value in commands.items())


def parse(expression: str) -> classad2.ExprTree:
    """A ClassAd expression; raises ``classad2.ClassAdException`` on a syntax error."""
    return classad2.ExprTree(expression)


def job_ad(commands: dict[str, str], **attrs) -> classad2.ClassAd:
    """A job ad: idle, never started, updated with ``attrs``; ``RequestMemory`` is the expression."""
    ad = classad2.ClassAd()
    ad.update({"NumJobStarts": 0, "JobStatus": IDLE, **attrs})
    ad["RequestMemory"] = parse(commands["request_memory"])
    return ad


def is_true(expression: str, ad: classad2.ClassAd) -> bool:
    """How the schedd reads a periodic expression: only ``true`` (or a non-zero number) fires."""
    value = parse(expression).eval(ad)
    return value is True or (isinstance(value, int) and not isinstance(value, bool) and value != 0)


@dataclass(frozen=True)
class Outcome:
    """What the schedd does at one moment: the memory request and the two periodic policies."""

    request_mb: int
    release: bool
    remove: bool


def outcome(commands: dict[str, str], **attrs) -> Outcome:
    ad = job_ad(commands, **attrs)
    return Outcome(
        request_mb=int(ad.eval("RequestMemory")),
        release=is_true(commands["periodic_release"], ad),
        remove=is_true(commands["periodic_remove"], ad),
    )


def first_start(commands: dict[str, str]) -> Outcome:
    return outcome(commands)


def _history(starts: int) -> dict[str, object]:
    """The attributes left by ``starts - 1`` earlier memory holds, each released."""
    if starts <= 1:
        return {"NumJobStarts": starts}
    return {"NumJobStarts": starts, "LastHoldReasonCode": MEMORY_HOLD_CODE, "LastHoldReasonSubCode": 0}


def memory_hold(commands: dict[str, str], starts: int = 1, usage_mb: int | None = None) -> Outcome:
    """Held for memory after ``starts`` starts (the earlier holds were memory holds, released)."""
    attrs = {
        **_history(starts),
        "JobStatus": HELD,
        "HoldReasonCode": MEMORY_HOLD_CODE,
        "HoldReasonSubCode": 0,
    }
    if usage_mb is not None:
        attrs["MemoryUsage"] = usage_mb
    return outcome(commands, **attrs)


def released(commands: dict[str, str], starts: int, usage_mb: int | None = None) -> Outcome:
    """Just released from the memory hold that ended start number ``starts``: idle again."""
    attrs = {"NumJobStarts": starts, "LastHoldReasonCode": MEMORY_HOLD_CODE, "LastHoldReasonSubCode": 0}
    if usage_mb is not None:
        attrs["MemoryUsage"] = usage_mb
    return outcome(commands, **attrs)


def run_until_done(commands: dict[str, str], peak_mb: int, max_starts: int = 50) -> tuple[list[int], str]:
    """Start the job until it fits, is removed, or stays held; return the requests and the end.

    The end is ``"done"`` (the last request held ``peak_mb``), ``"removed"`` or ``"held"``.
    A job above its request is held for memory with ``MemoryUsage = peak_mb``.
    """
    ad = job_ad(commands)
    requests: list[int] = []
    for _ in range(max_starts):
        request = int(ad.eval("RequestMemory"))
        requests.append(request)
        ad["NumJobStarts"] = int(ad["NumJobStarts"]) + 1
        if peak_mb <= request:
            return requests, "done"
        ad.update(
            {
                "JobStatus": HELD,
                "HoldReasonCode": MEMORY_HOLD_CODE,
                "HoldReasonSubCode": 0,
                "MemoryUsage": peak_mb,
            }
        )
        if is_true(commands["periodic_remove"], ad):
            return requests, "removed"
        if not is_true(commands["periodic_release"], ad):
            return requests, "held"
        ad.update({"JobStatus": IDLE, "LastHoldReasonCode": MEMORY_HOLD_CODE, "LastHoldReasonSubCode": 0})
        for key in ("HoldReasonCode", "HoldReasonSubCode"):
            del ad[key]
    raise AssertionError(f"still running after {max_starts} starts: {requests}")
