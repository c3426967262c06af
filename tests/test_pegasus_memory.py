"""Memory escalation under Pegasus: the HTCondor trio as ``condor`` profiles, evaluated by the real ClassAd library.

``pegasus-plan`` writes each ``condor`` profile of a job as a ``key = value`` line of that job's
submit file. These tests take the profiles from the written ``compute.yml``, write them the same
way, parse them with ``htcondor2.Submit`` and ``classad2`` and evaluate them in job ClassAds
(`tests/support/memory_classads.py`, shared with the HTCondor tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bps.wms.htcondor import memory
from bps.wms.htcondor.overrides import apply as apply_overrides
from bps.wms.pegasus.service import PegasusService
from bps.wms.pegasus.settings import HELD_TIMEOUT_S
from bps.wms.pegasus.translator import memory_profiles, translate, write_plan

try:
    from tests.support import memory_classads as ads
    from tests.support.pegasus_runner import build_sample
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from support import memory_classads as ads
    from support.pegasus_runner import build_sample

POOL = {"execution_site": "condorpool", "shared_scratch": "/scratch/pegasus", "pegasus_home": "/opt/pegasus"}


def _jobs(tmp_path: Path, pegasus: dict | None = None, overrides: dict | None = None):
    """The sample workflow and its written Pegasus jobs, by generic job name."""
    sample = build_sample(tmp_path, pegasus=pegasus or POOL)
    apply_overrides(sample.workflow, overrides)
    plan = translate(sample.workflow)
    out = Path(sample.workflow.submit_dir) / "pegasus"
    write_plan(plan, out)
    # compute jobs in compute.yml, the final job in workflow.yml (after the compute sub-workflow)
    written = [
        job
        for name in ("compute.yml", "workflow.yml")
        for job in json.loads((out / name).read_text())["jobs"]
        if job["type"] == "job"
    ]
    return sample, plan, {plan.job_map[job["id"]]["name"]: job for job in written}


def _submitted(job: dict) -> dict[str, str]:
    """The job's condor profiles as the schedd gets them: submit-file lines, parsed by htcondor2."""
    return ads.expand_submit(ads.submit_text(job["profiles"]["condor"]))


def test_every_compute_job_gets_the_trio_next_to_its_pegasus_memory(tmp_path):
    sample, plan, jobs = _jobs(tmp_path)
    for name, gjob in sample.workflow.jobs.items():
        profiles = jobs[name]["profiles"]
        assert list(profiles["condor"]) == list(ads.COMMANDS)
        assert profiles["pegasus"]["memory"] == gjob.resources.memory_mb
        for value in profiles["condor"].values():
            assert "$(" not in value  # no per-node macro: Pegasus writes one submit file per job
            ads.parse(value)
    # the final job runs `bps finalize` on the submit host, as the HTCondor FINAL node: no escalation
    assert "condor" not in jobs["finalize"]["profiles"]
    # structure unchanged: one Pegasus job per generic job plus the final job
    assert set(jobs) == {*sample.workflow.jobs, "finalize"}


def test_the_trio_is_the_htcondor_translators(tmp_path):
    """Same policy, same text as the DAG's submit description once its macro takes the label default."""
    from bps.wms.htcondor.translator import write_dag

    sample, _, jobs = _jobs(tmp_path, pegasus={**POOL, "held_timeout_s": 600})
    sample.workflow.site.condor = {"held_timeout_s": 600}
    layout = write_dag(sample.workflow, tmp_path / "dag")
    for label, name in [("coadd", "coadd.tract-0.patch-1"), ("calib", "calib.visit-1")]:
        dag = ads.expand_submit(layout.submit_file(label).read_text())
        assert _submitted(jobs[name]) == dag


@pytest.mark.parametrize(
    "name", ["isr.visit-1.detector-1", "isr.visit-1.detector-2", "calib.visit-1", "coadd.tract-0.patch-1"]
)
def test_first_start_memory_hold_and_hold_at_the_cap(tmp_path, name):
    sample, _, jobs = _jobs(tmp_path)
    gjob = sample.workflow.jobs[name]
    base = gjob.resources.memory_mb
    cap = min(gjob.retry.memory_max_mb, sample.workflow.site.max_memory_mb)
    commands = _submitted(jobs[name])

    # first start: the job's own request, nothing to release or remove
    assert ads.first_start(commands) == ads.Outcome(request_mb=base, release=False, remove=False)

    # held for memory with room under the cap: released, and asks for multiplier times more
    assert ads.memory_hold(commands, starts=1) == ads.Outcome(request_mb=base, release=True, remove=False)
    assert ads.released(commands, starts=1).request_mb == min(cap, 2 * base)
    # measured usage above the grown request wins (times the multiplier, below the cap)
    assert ads.released(commands, starts=1, usage_mb=base + 100).request_mb == min(cap, 2 * (base + 100))

    # held for memory after running at the cap (reached through its measured usage): removed
    assert ads.released(commands, starts=1, usage_mb=cap).request_mb == cap
    at_cap = ads.memory_hold(commands, starts=2, usage_mb=cap)
    assert at_cap == ads.Outcome(request_mb=cap, release=False, remove=True)


def test_a_job_grows_until_it_fits_and_one_that_never_fits_is_removed(tmp_path):
    sample, _, jobs = _jobs(tmp_path)
    commands = _submitted(jobs["coadd.tract-0.patch-1"])  # 4096 MB, cap 16384 (the site's largest slot)
    assert ads.run_until_done(commands, peak_mb=3000) == ([4096], "done")
    assert ads.run_until_done(commands, peak_mb=5000) == ([4096, 10000], "done")
    requests, end = ads.run_until_done(commands, peak_mb=20000)
    assert end == "removed" and max(requests) == 16384  # the run ends instead of a job held forever


def test_doubling_requests_reach_the_cap_before_removal(tmp_path):
    sample, _, jobs = _jobs(tmp_path)
    commands = _submitted(jobs["coadd.tract-0.patch-1"])  # 4096 -> 8192 -> 16384 (cap)
    # no MemoryUsage reported (or usage equal to the limit it was killed at): only doubling grows
    ad = ads.job_ad(commands)
    tried = []
    for _ in range(5):
        tried.append(int(ad.eval("RequestMemory")))
        ad.update({"NumJobStarts": int(ad["NumJobStarts"]) + 1, "JobStatus": ads.HELD, "HoldReasonCode": 34})
        if ads.is_true(commands["periodic_remove"], ad) or not ads.is_true(commands["periodic_release"], ad):
            break
        ad.update({"JobStatus": ads.IDLE, "LastHoldReasonCode": 34})
        del ad["HoldReasonCode"]
    assert tried == [4096, 8192, 16384]


def test_other_holds_are_removed_after_the_held_timeout(tmp_path):
    import classad2

    def held_for(commands, seconds):
        ad = ads.job_ad(
            commands,
            JobStatus=ads.HELD,
            HoldReasonCode=13,
            EnteredCurrentStatus=classad2.ExprTree(f"time() - {seconds}"),
        )
        return ads.is_true(commands["periodic_remove"], ad), ads.is_true(commands["periodic_release"], ad)

    _, _, jobs = _jobs(tmp_path)
    default = _submitted(jobs["calib.visit-1"])
    # Pegasus's own default periodic_remove (replaced by ours) removes held jobs after 30 minutes
    assert HELD_TIMEOUT_S == 1800
    assert held_for(default, 60) == (False, False)
    assert held_for(default, 4000) == (True, False)
    _, _, jobs = _jobs(tmp_path / "never", pegasus={**POOL, "held_timeout_s": None})
    assert held_for(_submitted(jobs["calib.visit-1"]), 10**6) == (False, False)


def test_the_cap_is_the_smaller_of_memory_max_mb_and_the_largest_slot_never_below_the_request(tmp_path):
    sample = build_sample(tmp_path, pegasus=POOL)
    job = sample.workflow.jobs["coadd.tract-0.patch-1"]
    site_cap = sample.workflow.site.max_memory_mb  # 16384, below memory_max_mb 32768
    commands = ads.expand_submit(ads.submit_text(memory_profiles(job, site_cap)))
    assert ads.released(commands, starts=1, usage_mb=10**6).request_mb == site_cap
    commands = ads.expand_submit(ads.submit_text(memory_profiles(job, 65536)))
    assert ads.released(commands, starts=1, usage_mb=10**6).request_mb == job.retry.memory_max_mb
    # a request above memory_max_mb (raised on restart): its own request is the cap, not an error
    big = replace(job, resources=replace(job.resources, memory_mb=40000))
    commands = ads.expand_submit(ads.submit_text(memory_profiles(big, 65536)))
    assert ads.first_start(commands).request_mb == 40000
    assert ads.memory_hold(commands, starts=1).remove


def test_a_restart_with_raised_memory_replans_with_the_new_literal_base(tmp_path):
    sample = build_sample(tmp_path, pegasus={"execution_site": "local"})
    service = PegasusService()
    main = service.prepare(sample.workflow)
    submit = Path(sample.workflow.submit_dir)
    before = {j["nodeLabel"]: j for j in json.loads((main.parent / "compute.yml").read_text())["jobs"]}
    assert ads.first_start(_submitted(before["coadd"])).request_mb == 4096

    service.prepare_restart(submit, {"labels": {"coadd": {"memory_mb": 6000, "memory_max_mb": 12000}}})
    after = {j["nodeLabel"]: j for j in json.loads((main.parent / "compute.yml").read_text())["jobs"]}
    commands = _submitted(after["coadd"])
    assert after["coadd"]["profiles"]["pegasus"]["memory"] == 6000
    assert "4096" not in commands["request_memory"]
    assert ads.first_start(commands).request_mb == 6000
    assert ads.released(commands, starts=1).request_mb == 12000  # the new cap
    assert _submitted(after["calib"]) == _submitted(before["calib"])  # other labels unchanged


def test_overrides_of_the_retry_policy_change_the_expressions(tmp_path):
    _, _, jobs = _jobs(tmp_path, overrides={"labels": {"calib": {"memory_multiplier": 3.0}}})
    assert ads.released(_submitted(jobs["calib.visit-1"]), starts=1).request_mb == 3 * 2048
    # retries bound the starts of one HTCondor job: max(retries, 1) + 1, as for HTCondor
    overrides = {"labels": {"calib": {"memory_multiplier": 1.0, "retries": 0}}}
    _, _, jobs = _jobs(tmp_path / "starts", overrides=overrides)
    commands = _submitted(jobs["calib.visit-1"])
    assert ads.memory_hold(commands, starts=2) == ads.Outcome(request_mb=2048, release=True, remove=False)
    assert ads.memory_hold(commands, starts=3) == ads.Outcome(request_mb=2048, release=False, remove=True)


def test_profiles_are_the_jobs_policy_with_a_literal_base(tmp_path):
    sample = build_sample(tmp_path, pegasus=POOL)
    job = sample.workflow.jobs["calib.visit-1"]
    expected = memory.submit_commands(
        memory.MemoryPolicy(2048, 2.0, 16384, 4, held_timeout_s=None), base="2048"
    )
    assert memory_profiles(job, 16384) == expected
    assert memory_profiles(job, 16384, held_timeout_s=0) == expected  # 0: never remove other holds


def test_the_pegasus_translator_imports_no_htcondor_bindings():
    code = (
        "import sys, bps.wms.pegasus.translator as t; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('htcondor', 'htcondor2', 'classad', 'classad2')"
        " or m == 'bps.wms.htcondor.translator'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
