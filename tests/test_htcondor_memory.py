"""Memory escalation expressions, evaluated by the real ClassAd library."""

from __future__ import annotations

import classad2
import pytest

from bps.wms.htcondor import memory

try:
    from tests.support import memory_classads as ads
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from support import memory_classads as ads

POLICY = memory.MemoryPolicy(base_mb=2048, multiplier=2.0, max_mb=8192, max_starts=4)
#: As the schedd gets them: submit lines parsed by htcondor2 ($(bps_memory:2048) -> 2048).
COMMANDS = ads.expand_submit(ads.submit_text(memory.submit_commands(POLICY)))


def _ad(**attrs) -> classad2.ClassAd:
    return ads.job_ad(COMMANDS, **attrs)


def _eval(expr: str, ad: classad2.ClassAd) -> bool:
    return ads.is_true(expr, ad)


def test_first_attempt_requests_the_base():
    assert _ad().eval("RequestMemory") == 2048


def test_memory_grows_by_the_multiplier_after_a_memory_hold():
    assert _ad(NumJobStarts=1, LastHoldReasonCode=34, LastHoldReasonSubCode=0).eval("RequestMemory") == 4096


def test_memory_follows_measured_usage_when_it_is_larger():
    ad = _ad(NumJobStarts=1, LastHoldReasonCode=34, MemoryUsage=3000)
    assert ad.eval("RequestMemory") == 6000


def test_memory_never_exceeds_the_cap():
    assert _ad(NumJobStarts=3, LastHoldReasonCode=34, MemoryUsage=7000).eval("RequestMemory") == 8192


def test_a_hold_for_another_reason_does_not_grow_memory():
    assert _ad(NumJobStarts=1, LastHoldReasonCode=13).eval("RequestMemory") == 2048


def test_policy_hold_with_subcode_34_counts_as_memory():
    assert _ad(NumJobStarts=1, LastHoldReasonCode=3, LastHoldReasonSubCode=34).eval("RequestMemory") == 4096


def test_memory_held_job_below_the_cap_is_released_not_removed():
    ad = _ad(JobStatus=5, HoldReasonCode=34, HoldReasonSubCode=0, NumJobStarts=1)
    assert _eval(memory.periodic_release(POLICY), ad)
    assert not _eval(memory.periodic_remove(POLICY), ad)


def test_memory_held_job_at_the_cap_is_removed_not_released():
    ad = _ad(JobStatus=5, HoldReasonCode=34, NumJobStarts=3, LastHoldReasonCode=34)
    assert ad.eval("RequestMemory") == 8192
    assert not _eval(memory.periodic_release(POLICY), ad)
    assert _eval(memory.periodic_remove(POLICY), ad)


def test_other_holds_are_removed_only_after_the_configured_timeout():
    policy = memory.MemoryPolicy(2048, 2.0, 8192, 4, held_timeout_s=600)
    fresh = _ad(JobStatus=5, HoldReasonCode=13, EnteredCurrentStatus=classad2.ExprTree("time() - 10"))
    old = _ad(JobStatus=5, HoldReasonCode=13, EnteredCurrentStatus=classad2.ExprTree("time() - 6000"))
    assert not _eval(memory.periodic_remove(policy), fresh)
    assert _eval(memory.periodic_remove(policy), old)
    assert not _eval(memory.periodic_remove(POLICY), old)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_mb": 0}, "positive"),
        ({"multiplier": 0.5}, "memory_multiplier"),
        ({"max_mb": 1024}, "memory_max_mb"),
    ],
)
def test_inconsistent_policies_are_refused(kwargs, match):
    values = {"base_mb": 2048, "multiplier": 2.0, "max_mb": 8192, "max_starts": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        memory.MemoryPolicy(**values)


def test_a_job_whose_request_only_doubles_is_tried_at_the_cap_before_removal():
    # No usage reported: the request doubles, 2048, 4096, then the cap 8192 is tried.
    ad, tried = _ad(), []
    for _ in range(6):
        tried.append(int(ad.eval("RequestMemory")))
        ad.update({"NumJobStarts": int(ad["NumJobStarts"]) + 1, "JobStatus": 5, "HoldReasonCode": 34})
        if _eval(memory.periodic_remove(POLICY), ad) or not _eval(memory.periodic_release(POLICY), ad):
            break
        ad.update({"JobStatus": 1, "LastHoldReasonCode": 34})
        del ad["HoldReasonCode"]
    assert tried == [2048, 4096, 8192]
    # with the usage reported, the job goes to the cap sooner, and is removed only after trying it
    assert ads.run_until_done(COMMANDS, peak_mb=9000) == ([2048, 8192], "removed")
    assert ads.run_until_done(COMMANDS, peak_mb=8000) == ([2048, 8192], "done")


def test_while_held_the_request_is_what_the_failed_attempt_ran_with():
    # After three starts (2048, 4096, 8192) the held job shows 8192, not a larger next request.
    held = ads.memory_hold(COMMANDS, starts=2)
    assert held == ads.Outcome(request_mb=4096, release=True, remove=False)
    # killed at the cap through its measured usage: it ran at the cap, so it is removed
    assert ads.memory_hold(COMMANDS, starts=2, usage_mb=8192) == ads.Outcome(8192, release=False, remove=True)


def test_a_running_attempt_after_a_memory_hold_requests_its_matched_slot_not_the_lagging_usage():
    # Real 25.14 pool (memory-system/): while the job ran, NumJobStarts did not yet count the
    # attempt, so RequestMemory followed MemoryUsage and SYSTEM_PERIODIC_HOLD fired early.
    ad = _ad(JobStatus=2, NumJobStarts=1, LastHoldReasonCode=26, LastHoldReasonSubCode=34, MemoryUsage=2686)
    assert ad.eval("RequestMemory") == 2686  # no matched slot recorded: as before
    ad["MachineAttrMemory0"] = 5376
    assert ad.eval("RequestMemory") == 5376
    ad["MachineAttrMemory0"] = 99999
    assert ad.eval("RequestMemory") == 8192  # never above the cap
    # held: what the attempt had, for the release/remove decisions (unchanged)
    held = _ad(JobStatus=5, NumJobStarts=2, LastHoldReasonCode=26, LastHoldReasonSubCode=34, MemoryUsage=2805)
    held["MachineAttrMemory0"] = 5376
    assert held.eval("RequestMemory") == 4096
