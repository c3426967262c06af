"""`bps.submit_files`: one write policy for the files `bps prepare` puts in a submit directory.

Every file the workflow system reads (``workflow.json``, the DAG and its submit files, the
Pegasus documents and catalogs) and the jobs' input files is written atomically (a
temporary name renamed over it) and not synced; what records the run's state (the run
record, the resolved configuration, provenance) keeps its sync. Checked by watching the
renames and syncs of a whole `bps prepare` for each engine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.toy_pipeline import TASKS_PYTHONPATH, prepare, submit_dir_of
from test_bps_workflow_stream import TOY

from bps import submit_files
from bps.forked_write import SEQUENTIAL_ENV

#: Files of a prepared submit directory that record its state: synced where they are written.
STATE = {"run_record.json", "submit_config.yaml", "provenance.json"}


def _watch(monkeypatch) -> tuple[set[str], set[str]]:
    """The paths renamed into place by an atomic write, and the paths synced, from now on."""
    renamed: set[str] = set()
    synced: set[str] = set()
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src, dst, *args, **kwargs):
        renamed.add(os.path.realpath(dst))
        return real_replace(src, dst, *args, **kwargs)

    def fsync(fd):
        synced.add(os.path.realpath(os.readlink(f"/proc/self/fd/{fd}")).split(".tmp-")[0])
        return real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    return renamed, synced


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name a synced descriptor")
@pytest.mark.parametrize(("wms", "site"), [("htcondor", "htcondor_shared"), ("pegasus", "pegasus_sharedfs")])
def test_prepare_writes_the_engines_files_atomically_and_unsynced(tmp_path, monkeypatch, wms, site):
    settings: dict[str, object] = (
        {"condor": {"skip_checks": ["tmp_node_log", "job_user"]}} if wms == "htcondor" else {}
    )
    settings["environment"] = {"PYTHONPATH": TASKS_PYTHONPATH}
    toy = TOY.set_up(tmp_path, monkeypatch, wms=wms, compute_site=site, site=settings)
    config = toy.submit_yaml("policy")
    monkeypatch.setenv(SEQUENTIAL_ENV, "1")  # every write in this process, where it is watched
    renamed, synced = _watch(monkeypatch)
    submit_dir = Path(os.path.realpath(submit_dir_of(config)))
    prepare(config)
    written = {str(p) for p in submit_dir.rglob("*") if p.is_file() and p.name not in STATE}
    names = {Path(p).relative_to(submit_dir).as_posix() for p in written}
    if wms == "htcondor":
        expected = {"u_test_stream.dag", "dagman.config", "make.sub", "total.sub", "bps_final.sub"}
    else:
        expected = {f"pegasus/{name}" for name in ("compute.yml", "replicas.yml", "workflow.yml", "plan.sh")}
    assert expected | {"workflow.json", "input_checks/000000.json"} <= names
    assert sorted(written - renamed) == []  # every one renamed into place
    assert sorted(written & synced) == []  # none synced
    assert not submit_files.SYNC


def test_a_submit_file_replaces_the_old_content_at_once_and_leaves_no_temporary(tmp_path, monkeypatch):
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    path = tmp_path / "workflow.dag"
    path.write_text("old")
    with submit_files.submit_file(path) as out:
        out.write("JOB a a.sub\n")
        assert path.read_text() == "old"
    submit_files.write_submit_text(tmp_path / "plan.sh", "#!/bin/sh\n")
    assert path.read_text() == "JOB a a.sub\n" and (tmp_path / "plan.sh").read_text() == "#!/bin/sh\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.sh", "workflow.dag"] and synced == []
