"""HTCondorService without an HTCondor pool: clear errors, and a submit directory that stays usable."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.dagman_runner import run_dag
from support.htcondor_workflows import diamond

from bps.wms.base import WmsError, WmsUnavailableError, get_service, read_run_record, write_run_record
from bps.wms.htcondor.service import HTCondorService


def test_the_registry_of_services_finds_htcondor():
    assert isinstance(get_service("htcondor"), HTCondorService)


def test_submit_without_htcondor_says_what_to_do_and_keeps_the_directory(tmp_path):
    wf = diamond(tmp_path)
    service = HTCondorService()
    dag = service.prepare(wf)
    before = dag.read_text()
    with pytest.raises(WmsUnavailableError) as err:
        service.submit(Path(wf.submit_dir))
    assert f"bps submit {Path(wf.submit_dir).absolute()}" in str(err.value)
    assert read_run_record(Path(wf.submit_dir))["state"] == "prepared"
    assert dag.read_text() == before
    # Still usable: the prepared files run.
    assert run_dag(dag).exit_code == 0


def test_submit_refuses_a_run_that_is_still_active(tmp_path):
    wf = diamond(tmp_path)
    service = HTCondorService()
    service.prepare(wf)
    write_run_record(Path(wf.submit_dir), cluster_id=1234, state="submitted")
    with pytest.raises(WmsError, match="has not finished"):
        service.submit(Path(wf.submit_dir))
    with pytest.raises(WmsError, match="still active"):
        service.prepare_restart(Path(wf.submit_dir))


def test_cancel_of_a_run_never_submitted_is_refused(tmp_path):
    wf = diamond(tmp_path)
    service = HTCondorService()
    service.prepare(wf)
    with pytest.raises(WmsError, match="never submitted"):
        service.cancel(Path(wf.submit_dir))


def test_cancel_without_a_schedd_reports_it_unreachable(tmp_path):
    wf = diamond(tmp_path)
    service = HTCondorService()
    service.prepare(wf)
    write_run_record(Path(wf.submit_dir), cluster_id=99, state="submitted")
    with pytest.raises(WmsUnavailableError, match="cannot reach the schedd"):
        service.cancel(Path(wf.submit_dir))
    assert read_run_record(Path(wf.submit_dir))["state"] == "submitted"


def test_report_after_the_schedd_forgot_the_run_uses_the_submit_directory(tmp_path):
    wf = diamond(tmp_path, extra={"detect_0": ["--exit", "65"]})
    service = HTCondorService()
    dag = service.prepare(wf)
    write_run_record(Path(wf.submit_dir), cluster_id=4321, state="submitted")
    run_dag(dag)
    report = service.report(Path(wf.submit_dir))
    assert report.run_id == "4321" and report.state == "failed"
    assert report.counts["detect"]["failed"] == 1 and report.counts["calibrate"]["succeeded"] == 2
    assert read_run_record(Path(wf.submit_dir))["state"] == "failed"


def test_report_of_a_directory_that_is_not_an_htcondor_run_is_a_clear_error(tmp_path):
    with pytest.raises(WmsError, match="not prepared for HTCondor"):
        HTCondorService().report(tmp_path)
