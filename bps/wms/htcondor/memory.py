"""Memory escalation: the ``request_memory`` / ``periodic_release`` / ``periodic_remove`` trio.

A job killed for exceeding its memory is put on hold by the pool (hold code 34, or
code 3 / subcode 34 when a ``SYSTEM_PERIODIC_HOLD`` policy did it). Experienced users
then let the job release itself with a larger request, and remove it once the request
has reached the cap so that DAGMan sees a failure instead of a job held forever
(field note 6). The pieces:

- ``request_memory`` is an expression, re-evaluated at each match: the base request until a
  memory hold happened, then ``base * multiplier ** NumJobStarts`` or ``MemoryUsage *
  multiplier`` (whichever is larger), never above the cap. While the job runs or is held,
  ``NumJobStarts`` already counts the current attempt and ``LastHoldReasonCode`` still
  describes the *previous* hold, so ``RequestMemory`` then evaluates to what the attempt was
  matched with: ``base * multiplier ** (NumJobStarts - 1)`` or the ``MemoryUsage`` it was
  killed at (about its limit), whichever is larger. The release and remove policies rely on
  that, so an attempt at the cap is always made before the job is removed.
- ``periodic_release``: a memory hold, room left under the cap, starts left.
- ``periodic_remove``: a memory hold at the cap or out of starts; optionally any other hold
  older than ``held_timeout_s`` (a run must end, not sit "running" forever).

The base is the submit macro ``bps_memory`` with the label's request as default, so a
restart can raise the base of single nodes through ``VARS`` (field note 7). Pegasus
(`bps.wms.pegasus.translator`) attaches the same trio to its jobs as ``condor`` profiles;
it has no per-node ``VARS``, so it passes the job's request as a literal ``base``.

Pure strings: this module imports nothing from HTCondor, so other translators can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Current hold is memory related.
MEMORY_HOLD = "(HoldReasonCode =?= 34 || (HoldReasonCode =?= 3 && HoldReasonSubCode =?= 34))"
#: The last (already released) hold was memory related.
LAST_MEMORY_HOLD = "(LastHoldReasonCode =?= 34 || (LastHoldReasonCode =?= 3 && LastHoldReasonSubCode =?= 34))"


@dataclass(frozen=True)
class MemoryPolicy:
    """The numbers behind the expressions (from `bps.workflow.RetryPolicy` and `Resources`)."""

    base_mb: int
    multiplier: float
    max_mb: int
    max_starts: int
    held_timeout_s: int | None = None

    def __post_init__(self) -> None:
        if self.base_mb <= 0:
            raise ValueError(f"memory request must be positive, got {self.base_mb} MB")
        if self.multiplier < 1:
            raise ValueError(f"memory_multiplier must be >= 1 (it grows memory), got {self.multiplier}")
        if self.max_mb < self.base_mb:
            raise ValueError(
                f"memory_max_mb ({self.max_mb}) is below the request ({self.base_mb} MB): "
                "raise memory_max_mb or lower the job's memory"
            )


def base_macro(default_mb: int) -> str:
    """The per-node base request: ``VARS`` may set ``bps_memory``, else the label default."""
    return f"$(bps_memory:{int(default_mb)})"


def request_memory(policy: MemoryPolicy, base: str | None = None) -> str:
    """The ``request_memory`` expression.

    ``base`` is the ClassAd text of the first request: by default the DAG's per-node macro
    (`base_macro`); a workflow system without per-node ``VARS`` passes a literal
    (`literal_base`).
    """
    base = base_macro(policy.base_mb) if base is None else base
    mult = _num(policy.multiplier)
    usage = "ifThenElse(isUndefined(MemoryUsage), 0, MemoryUsage)"
    # Idle (being matched): the next attempt's request. NumJobStarts counts the attempts so far.
    grown = (
        f"int(min({{ {policy.max_mb}, max({{ {base} * pow({mult}, NumJobStarts), {usage} * {mult} }}) }}))"
    )
    # Running or held: NumJobStarts already counts this attempt, so one power less, or the
    # usage it was killed at (about the limit it ran with), is what this attempt had. Were it
    # the next request instead, a held job would be removed when the *next* request reached
    # the cap, and the cap itself would never be tried.
    current = f"int(min({{ {policy.max_mb}, max({{ {base} * pow({mult}, NumJobStarts - 1), {usage} }}) }}))"
    return (
        f"ifThenElse({LAST_MEMORY_HOLD} && NumJobStarts > 0, "
        f"ifThenElse(JobStatus =?= 1, {grown}, {current}), {base})"
    )


def literal_base(policy: MemoryPolicy) -> str:
    """The base request as a plain number, for submit descriptions written without ``VARS``."""
    return str(int(policy.base_mb))


def submit_commands(policy: MemoryPolicy, base: str | None = None) -> dict[str, str]:
    """The trio as submit commands: ``{"request_memory": ..., "periodic_release": ..., "periodic_remove": ...}``."""
    return {
        "request_memory": request_memory(policy, base),
        "periodic_release": periodic_release(policy),
        "periodic_remove": periodic_remove(policy),
    }


def periodic_release(policy: MemoryPolicy) -> str:
    return (
        f"JobStatus == 5 && {MEMORY_HOLD} && NumJobStarts <= {policy.max_starts} "
        f"&& RequestMemory < {policy.max_mb}"
    )


def periodic_remove(policy: MemoryPolicy) -> str:
    memory = f"(JobStatus == 5 && {MEMORY_HOLD} && (RequestMemory >= {policy.max_mb} || NumJobStarts > {policy.max_starts}))"
    if policy.held_timeout_s:
        other = f"(JobStatus == 5 && !{MEMORY_HOLD} && time() - EnteredCurrentStatus > {int(policy.held_timeout_s)})"
        return f"{memory} || {other}"
    return memory


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))
