"""Memory escalation: the ``request_memory`` / ``periodic_release`` / ``periodic_remove`` trio.

A job that uses more memory than it requested is put on hold by the pool; which hold
code it gets depends on the pool's policy (`POOL_POLICIES`, chosen by the site's
``condor.memory_policy``):

- ``cgroup``: the execute node enforces the request with cgroups; HTCondor holds the
  job with code 34 (``JobOutOfResources``);
- ``startd``: ``use POLICY : HOLD_IF_MEMORY_EXCEEDED`` evicts and holds it with code 21
  (``StartdHeldJob``), subcode 102;
- ``system_periodic_hold``: the schedd's ``SYSTEM_PERIODIC_HOLD`` with
  ``SYSTEM_PERIODIC_HOLD_SUBCODE = 34`` holds it with code 26 (``SystemPolicy``), subcode 34;
- ``job``: the pool does nothing, so every job carries its own ``periodic_hold`` (usage
  above the request, subcode 34): code 3 (``JobPolicy``), subcode 34;
- ``any`` (the default): every code above is recognised and no ``periodic_hold`` is added.

Experienced users then let the job release itself with a larger request, and remove it once
the request has reached the cap so that DAGMan sees a failure instead of a job held forever
(out-of-memory kills otherwise look like other failures, and a held job leaves the run
"running" forever). The pieces:

- ``request_memory`` is an expression, re-evaluated at each match: the base request until a
  memory hold happened, then ``base * multiplier ** NumJobStarts`` or ``MemoryUsage *
  multiplier`` (whichever is larger), never above the cap. While the job runs or is held,
  ``NumJobStarts`` already counts the current attempt and ``LastHoldReasonCode`` still
  describes the *previous* hold, so ``RequestMemory`` then evaluates to what the attempt was
  matched with: ``base * multiplier ** (NumJobStarts - 1)`` or the ``MemoryUsage`` it was
  killed at (about its limit), whichever is larger. The release and remove policies rely on
  that, so an attempt at the cap is always made before the job is removed. While a job runs
  after a memory hold, ``RequestMemory`` is the memory of the slot it was matched with
  (``MachineAttrMemory0``, recorded by ``job_machine_attrs = Memory`` in the DAG's submit
  description), so a pool policy comparing ``MemoryUsage > RequestMemory`` fires only when the
  job outgrows its slot.
- ``periodic_release``: a memory hold, room left under the cap, starts left.
- ``periodic_remove``: a memory hold at the cap or out of starts; optionally any other hold
  older than ``held_timeout_s`` (a run must end, not sit "running" forever).

Every attempt of a node runs in the same cluster (the HTCondor translator retries with
``max_retries``, not with new DAGMan clusters), so ``NumJobStarts``, ``MemoryUsage`` and the
last hold carry over: a retry never starts again below a request that already failed, and a
job removed at the cap ends its node.

The base is the submit macro ``bps_memory`` with the label's request as default, so a
restart can raise the base of single nodes through ``VARS`` (the memory a node grew to
is not forgotten on restart). Pegasus
(`bps.wms.pegasus.translator`) attaches the same trio to its jobs as ``condor`` profiles;
it has no per-node ``VARS``, so it passes the job's request as a literal ``base``.

Pure strings: this module imports nothing from HTCondor, so other translators can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: (HoldReasonCode, HoldReasonSubCode or None for any) of a memory hold, per pool policy.
POOL_POLICIES: dict[str, tuple[tuple[int, int | None], ...]] = {
    "cgroup": ((34, None),),
    "startd": ((21, 102),),
    "system_periodic_hold": ((26, 34),),
    "job": ((3, 34),),
    "any": ((34, None), (21, 102), (26, 34), (3, 34)),
}
DEFAULT_POOL_POLICY = "any"
#: The matched slot's memory, recorded in the job ad by ``job_machine_attrs = Memory``.
MATCHED_MEMORY = "MachineAttrMemory0"
#: The hold subcode of the ``periodic_hold`` bps adds under the ``job`` policy.
JOB_POLICY_SUBCODE = 34


def hold_condition(pool_policy: str = DEFAULT_POOL_POLICY, prefix: str = "") -> str:
    """ClassAd test that the current (``prefix=""``) or last (``prefix="Last"``) hold was for memory."""
    try:
        codes = POOL_POLICIES[pool_policy]
    except KeyError:
        raise ValueError(
            f"unknown memory policy {pool_policy!r}; expected one of {sorted(POOL_POLICIES)}"
        ) from None
    terms = [
        f"{prefix}HoldReasonCode =?= {code}"
        if sub is None
        else f"({prefix}HoldReasonCode =?= {code} && {prefix}HoldReasonSubCode =?= {sub})"
        for code, sub in codes
    ]
    return "(" + " || ".join(terms) + ")"


#: Current hold is memory related (any pool policy).
MEMORY_HOLD = hold_condition()
#: The last (already released) hold was memory related (any pool policy).
LAST_MEMORY_HOLD = hold_condition(prefix="Last")


@dataclass(frozen=True)
class MemoryPolicy:
    """The numbers behind the expressions (from `bps.workflow.RetryPolicy` and `Resources`)."""

    base_mb: int
    multiplier: float
    max_mb: int
    max_starts: int
    held_timeout_s: int | None = None
    #: Which hold codes mean "over its memory" on this pool (a key of `POOL_POLICIES`).
    pool_policy: str = DEFAULT_POOL_POLICY

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
        hold_condition(self.pool_policy)  # raises for an unknown policy

    @property
    def memory_hold(self) -> str:
        return hold_condition(self.pool_policy)

    @property
    def last_memory_hold(self) -> str:
        return hold_condition(self.pool_policy, prefix="Last")


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
    # Running: the memory of the slot it was matched with (``job_machine_attrs = Memory`` in the
    # DAG's job.sub; without it, e.g. Pegasus jobs, `current` as before). On a
    # real 25.14 pool the schedd's NumJobStarts did not yet count a running attempt, so
    # `current` followed the live MemoryUsage with a lag and a pool policy comparing
    # MemoryUsage > RequestMemory held the job early (tests/data/real-htcondor-25.14.0).
    running = f"int(min({{ {policy.max_mb}, {MATCHED_MEMORY} }}))"
    return (
        f"ifThenElse({policy.last_memory_hold} && NumJobStarts > 0, "
        f"ifThenElse(JobStatus =?= 1, {grown}, "
        f"ifThenElse(JobStatus =?= 2 && {MATCHED_MEMORY} =!= undefined, {running}, {current})), {base})"
    )


def literal_base(policy: MemoryPolicy) -> str:
    """The base request as a plain number, for submit descriptions written without ``VARS``."""
    return str(int(policy.base_mb))


def submit_commands(policy: MemoryPolicy, base: str | None = None) -> dict[str, str]:
    """The trio as submit commands: ``{"request_memory": ..., "periodic_release": ..., "periodic_remove": ...}``,
    plus ``periodic_hold`` / ``periodic_hold_subcode`` / ``periodic_hold_reason`` under the ``job`` policy."""
    commands = {
        "request_memory": request_memory(policy, base),
        "periodic_release": periodic_release(policy),
        "periodic_remove": periodic_remove(policy),
    }
    commands.update(periodic_hold(policy))
    return commands


def periodic_hold(policy: MemoryPolicy) -> dict[str, str]:
    """The job's own memory limit, only when the pool enforces none (``job`` policy); else ``{}``.

    Code 3 (``JobPolicy``) with subcode 34, as the ``job`` policy's codes expect. The reason
    names usage and request, so a report can say how far over the job went."""
    if policy.pool_policy != "job":
        return {}
    return {
        "periodic_hold": "JobStatus == 2 && MemoryUsage =!= undefined && MemoryUsage > RequestMemory",
        "periodic_hold_subcode": str(JOB_POLICY_SUBCODE),
        "periodic_hold_reason": (
            'strcat("memory usage ", MemoryUsage, " MB exceeded request_memory ", RequestMemory, " MB")'
        ),
    }


def periodic_release(policy: MemoryPolicy) -> str:
    return (
        f"JobStatus == 5 && {policy.memory_hold} && NumJobStarts <= {policy.max_starts} "
        f"&& RequestMemory < {policy.max_mb}"
    )


def periodic_remove(policy: MemoryPolicy) -> str:
    hold = policy.memory_hold
    memory = f"(JobStatus == 5 && {hold} && (RequestMemory >= {policy.max_mb} || NumJobStarts > {policy.max_starts}))"
    if policy.held_timeout_s:
        other = f"(JobStatus == 5 && !{hold} && time() - EnteredCurrentStatus > {int(policy.held_timeout_s)})"
        return f"{memory} || {other}"
    return memory


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))
