"""The writers that read a streamed workflow's columns write what the jobs' writers write.

`bps.workflow_io` (``workflow.json``), the HTCondor DAG (`bps.wms.htcondor.translator`), its
resource check and prepare's input-locations / input-checks files read an unclustered,
streamed workflow through `bps.workflow_stream.StreamedJobs.columns()`, making no `Job` per
job. Each is checked here against the same writer given the built workflow's jobs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_bps_workflow_builder import demo_quanta, options, path_of
from test_bps_workflow_stream import _chains, _options

import bps.workflow_stream as workflow_stream_mod
from bps import prepare as prepare_mod
from bps.workflow import Resources
from bps.workflow_builder import build_workflow
from bps.workflow_io import save_workflow, workflow_to_json
from bps.workflow_stream import build_streamed_workflow


def _files_of(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def _with_added_arguments(quanta, opts):
    """The built and the streamed workflow of ``quanta``, prepare's arguments added to some jobs as
    `bps.prepare` adds them: groups of jobs sharing a file, so that a label's jobs end differently."""
    built = build_workflow(quanta, opts, path_of)
    streamed = build_streamed_workflow(quanta, opts, path_of)
    numbers = {name: j for j, name in enumerate(streamed.workflow.jobs._c.names)}
    groups = [(["isr_1_Cam_1", "isr_2_Cam_1"], ["--input-locations", "/sub/input_locations/000000.json"])]
    groups.append((["isr_2_Cam_1", "warp_0_sm_0_1"], ["--input-checks", "/sub/input checks/0.json"]))
    for names, arguments in groups:
        for name in names:
            built.jobs[name].arguments += arguments
        streamed.add_arguments([numbers[name] for name in names], arguments)
    return built, streamed.workflow


@pytest.mark.parametrize("manifest_parent", ["/sub", '/sub dir/with "quotes" \\ and a backslash'])
def test_the_dag_of_a_streamed_workflow_is_the_one_written_from_its_jobs(tmp_path, manifest_parent):
    from bps.wms.htcondor import translator

    opts = _options()
    opts.submit_dir = manifest_parent
    built, streamed = _with_added_arguments(demo_quanta(), opts)
    assert isinstance(streamed.jobs, translator.StreamedJobs)
    translator.write_dag(built, tmp_path / "dag")
    expected = _files_of(tmp_path / "dag")
    (tmp_path / "dag").rename(tmp_path / "built")
    translator.write_dag(streamed, tmp_path / "dag")
    assert _files_of(tmp_path / "dag") == expected
    dag = expected["wf.dag"].decode()
    assert "CATEGORY warp_" in dag and "summary" in dag  # a throttled label; a label of one job
    # the isr jobs end differently: the label's suffix is cut where they differ
    assert re.search(r"bps_args=\"\d+ --job isr_1_Cam_1 .*--input-locations", dag)


def test_the_dag_of_a_streamed_workflow_takes_the_jobs_path_for_restart_overrides(tmp_path, monkeypatch):
    from bps.wms.htcondor import translator

    built, streamed = _with_added_arguments(demo_quanta(), _options())
    monkeypatch.setattr(translator, "_column_node_lines", None)  # must not be used
    overrides = translator.NodeOverrides(memory_mb={"isr_1_Cam_1": 9000})
    translator.write_dag(built, tmp_path / "built", overrides)
    translator.write_dag(streamed, tmp_path / "streamed", overrides)
    before, after = (_files_of(tmp_path / d) for d in ("built", "streamed"))
    assert after["wf.dag"].replace(b"/streamed/", b"/built/") == before["wf.dag"]
    assert b'bps_memory="9000"' in after["wf.dag"]


def test_workflow_json_of_a_streamed_workflow_with_added_arguments_is_the_built_one(tmp_path):
    built, streamed = _with_added_arguments(demo_quanta(), _options())
    save_workflow(built, tmp_path / "built.json")
    save_workflow(streamed, tmp_path / "streamed.json")
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "built.json").read_bytes()


def test_a_streamed_job_name_that_needs_json_escapes_is_written_as_when_built(tmp_path, monkeypatch):
    """Job names are file-name safe when built; should one not be, both writers still escape it."""
    from bps import workflow_stream
    from bps.wms.htcondor import translator

    # the build names a chunk of jobs at once
    monkeypatch.setattr(workflow_stream, "safe_names", lambda texts: [text + ' "é\\' for text in texts])
    streamed = build_streamed_workflow(_chains(), options(), path_of).workflow
    built = GenericWorkflowCopy.of(streamed)
    save_workflow(built, tmp_path / "built.json")
    save_workflow(streamed, tmp_path / "streamed.json")
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "built.json").read_bytes()
    node = lambda text: text.replace(" ", "_").replace('"', "q")  # noqa: E731
    monkeypatch.setattr(translator, "safe_name", node)  # the jobs' writer, one name at a time
    monkeypatch.setattr(translator, "safe_names", lambda texts: list(map(node, texts)))  # the columns' writer
    translator.write_dag(built, tmp_path / "dag")
    expected = _files_of(tmp_path / "dag")
    (tmp_path / "dag").rename(tmp_path / "built")
    translator.write_dag(streamed, tmp_path / "dag")
    assert _files_of(tmp_path / "dag") == expected


class GenericWorkflowCopy:
    @staticmethod
    def of(workflow):
        """A workflow of plain `Job` objects equal to ``workflow`` (its writers take the jobs' path)."""
        from dataclasses import replace

        return replace(workflow, jobs=dict(workflow.jobs.items()), parents=dict(workflow.parents.items()))


def test_a_streamed_label_over_a_slot_is_refused_naming_its_first_job_as_when_built(tmp_path):
    from bps.wms.htcondor.checks import check_workflow

    opts = options(resources_for=lambda label: Resources(memory_mb=99_999 if label == "warp" else 100))
    built = build_workflow(demo_quanta(), opts, path_of)
    streamed = build_streamed_workflow(demo_quanta(), opts, path_of).workflow
    problems = check_workflow(built, tmp_path)
    assert check_workflow(streamed, tmp_path) == problems
    assert any("label 'warp' asks for memory_mb=99999 (job warp_" in p for p in problems)


def test_streamed_input_files_of_both_kinds_in_one_pass_are_the_built_ones(tmp_path, monkeypatch):
    """Locations and checks grouped in one pass over the jobs: the same files as two passes over
    the built jobs, and each job's ``--input-locations`` still before its ``--input-checks``."""
    monkeypatch.setattr(prepare_mod, "LOCATIONS_PER_FILE", 1)  # a file per job: groups end at different jobs
    built = build_workflow(demo_quanta(), _options(), path_of)
    streamed = build_streamed_workflow(demo_quanta(), _options(), path_of)
    raws = sorted({f.lfn for job in built.jobs.values() for f in job.inputs if f.producer is None})
    locations = {lfn: f"elsewhere/{lfn}" for lfn in raws[1:]}
    checks = {lfn: [len(lfn), "sum"] for lfn in raws[:-1]}
    kinds = {"locations": (locations, "--input-locations"), "checks": (checks, "--input-checks")}
    (tmp_path / "built").mkdir()
    (tmp_path / "streamed").mkdir()
    for name, (by_lfn, option) in kinds.items():
        prepare_mod._write_shared_input_files(built, by_lfn, tmp_path / "built" / name, option)
    prepare_mod._write_streamed_inputs(
        streamed, [(by_lfn, tmp_path / "streamed" / name, option) for name, (by_lfn, option) in kinds.items()]
    )
    before, after = _files_of(tmp_path / "built"), _files_of(tmp_path / "streamed")
    assert after == before and len(after) == 2 * (len(raws) - 1)
    as_built = json.dumps(workflow_to_json(built)["jobs"]).replace(str(tmp_path / "built"), "DIR")
    as_streamed = json.dumps(workflow_to_json(streamed.workflow)["jobs"])
    assert as_streamed.replace(str(tmp_path / "streamed"), "DIR") == as_built
    assert all(
        job.arguments.index("--input-locations") < job.arguments.index("--input-checks")
        for job in streamed.workflow.jobs.values()
        if "--input-checks" in job.arguments and "--input-locations" in job.arguments
    )


def test_workflow_json_of_a_streamed_workflow_is_written_from_its_columns_as_from_its_jobs(
    tmp_path, monkeypatch
):
    """The columns writer makes no `Job` and writes the bytes the object writer writes."""
    from bps import workflow_io

    built, streamed = _with_added_arguments(demo_quanta(), _options())
    save_workflow(built, tmp_path / "built.json")
    calls: list[object] = []
    monkeypatch.setattr(workflow_io, "_write_objects", lambda *a: calls.append(a[0]))
    save_workflow(streamed, tmp_path / "streamed.json")
    assert calls == []
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "built.json").read_bytes()


def test_jobs_of_one_group_of_both_input_files_share_one_arguments_tuple(tmp_path):
    """10^6 jobs reading overall inputs hold one added-arguments tuple per group, not one per job."""
    streamed = build_streamed_workflow(demo_quanta(), _options(), path_of)
    raws = sorted({lfn for _, lfns in streamed.jobs_reading_inputs() for lfn in lfns})
    kinds = [
        ({lfn: f"elsewhere/{lfn}" for lfn in raws}, tmp_path / "locations", "--input-locations"),
        ({lfn: [1, "sum"] for lfn in raws}, tmp_path / "checks", "--input-checks"),
    ]
    prepare_mod._write_streamed_inputs(streamed, kinds)
    jobs = streamed.workflow.jobs
    added = [jobs.columns().extra.get(j, ()) for j, _ in streamed.jobs_reading_inputs()]
    assert len(added) > 1 and len({id(a) for a in added}) == 1
    assert added[0] == (
        "--input-locations", str(tmp_path / "locations" / "000000.json"),
        "--input-checks", str(tmp_path / "checks" / "000000.json"),
    )  # fmt: skip


def test_safe_names_are_each_safe_name():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from bps.names import safe_name, safe_names

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.one_of(st.text(max_size=8), st.sampled_from(["_", "__", "a b", "JOB", "x_", "é"]))))
    def check(texts):
        assert safe_names(texts) == [safe_name(t) for t in texts]

    check()


def test_common_values_in_one_pass_are_each_jobs_common_value():
    """The log directory of each node: the one-pass reading gives what asking job by job gives,
    for jobs of one file, of several, and of none."""
    from bps.wms.htcondor.layout import UNIT_KEYS

    for quanta in (demo_quanta(), _chains()):
        jobs = build_streamed_workflow(quanta, _options(), path_of).workflow.jobs
        for keys in (UNIT_KEYS, ("detector", "visit"), ("nothing",)):
            expected = [jobs.common_value(j, keys) for j in jobs.columns().order]
            assert list(jobs.common_values(keys)) == expected
        assert any(
            expected is not None
            for expected in (jobs.common_value(j, UNIT_KEYS) for j in jobs.columns().order)
        )


def _mixed_readers():
    """Jobs reading one raw, two raws (one also read by another job), a raw and a produced file, none."""
    from test_bps_workflow_builder import CALEXP, RAW, WARP, add_quantum, ds

    from supertask.quantum import Quantum

    quanta: list[Quantum] = []

    def add(label, did, inputs, outputs):
        add_quantum(quanta, label, did, inputs, outputs)

    def did(v):
        return dict(instrument="Cam", visit=v, detector=1)

    for v in range(1, 7):
        add("a", did(v), [ds(RAW, "raw/run", **did(v))], [ds(CALEXP, **did(v))])
    for v in (1, 3):
        add("m", did(v), [ds(RAW, "raw/run", **did(v)), ds(RAW, "raw/run", **did(v + 1))], [])
    for v in range(1, 7):
        add(
            "b",
            did(v),
            [ds(CALEXP, **did(v)), ds(RAW, "raw/run", **did(v))],
            [ds(WARP, patch=0, skymap="s", tract=0, visit=v)],
        )
        add("c", did(v), [ds(CALEXP, **did(v))], [ds(WARP, patch=1, skymap="s", tract=0, visit=v)])
    return quanta


@pytest.mark.parametrize("arrays_from", [0, 10**9], ids=["numpy arrays", "python steps"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 100])
def test_input_reader_columns_are_the_jobs_reading_inputs_in_any_chunks(chunk, arrays_from):
    for quanta in (_mixed_readers(), demo_quanta()):
        streamed = build_streamed_workflow(quanta, _options(), path_of)
        jobs, counts, lfns = [], [], []
        for j, c, n in streamed.input_reader_columns(chunk, arrays_from):
            assert len(j) == len(c) <= chunk and len(n) == sum(c)
            jobs += j
            counts += c
            lfns += n
        expected = list(streamed.jobs_reading_inputs())
        assert jobs == [j for j, _ in expected] and counts == [len(n) for _, n in expected]
        assert lfns == [lfn for _, names in expected for lfn in names]
        assert 2 in counts or quanta[0].taskLabel == "isr"


@pytest.mark.parametrize("per_file", [1, 2, 3, 5, 2000])
def test_streamed_input_files_fill_groups_by_slices_as_built_ones_job_by_job(tmp_path, monkeypatch, per_file):
    """Runs of one-input jobs fill the files in bulk: same files, same arguments, whatever the file size."""
    monkeypatch.setattr(prepare_mod, "LOCATIONS_PER_FILE", per_file)
    built = build_workflow(_mixed_readers(), _options(), path_of)
    streamed = build_streamed_workflow(_mixed_readers(), _options(), path_of)
    raws = sorted({f.lfn for job in built.jobs.values() for f in job.inputs if f.producer is None})
    kinds = {
        "locations": ({lfn: f"elsewhere/{lfn}" for lfn in raws[::2]}, "--input-locations"),
        "checks": ({lfn: [len(lfn), "sum"] for lfn in raws}, "--input-checks"),
    }
    (tmp_path / "built").mkdir()
    (tmp_path / "streamed").mkdir()
    for name, (by_lfn, option) in kinds.items():
        prepare_mod._write_shared_input_files(built, by_lfn, tmp_path / "built" / name, option)
    # columns only, by arrays even for these few jobs: no list per job
    monkeypatch.setattr(type(streamed), "jobs_reading_inputs", None)
    monkeypatch.setattr(workflow_stream_mod, "ARRAYS_FROM", 0)
    prepare_mod._write_streamed_inputs(
        streamed, [(by_lfn, tmp_path / "streamed" / name, option) for name, (by_lfn, option) in kinds.items()]
    )
    assert _files_of(tmp_path / "streamed") == _files_of(tmp_path / "built") != {}
    as_built = json.dumps(workflow_to_json(built)["jobs"]).replace(str(tmp_path / "built"), "DIR")
    as_streamed = json.dumps(workflow_to_json(streamed.workflow)["jobs"])
    assert as_streamed.replace(str(tmp_path / "streamed"), "DIR") == as_built


def test_input_files_are_grouped_with_the_cyclic_collector_paused(tmp_path):
    """A million jobs' groups, all kept until written, made the collector walk the heap for nothing."""
    import gc

    collecting: list[bool] = []

    class Checks(dict):
        def __getitem__(self, lfn):
            collecting.append(gc.isenabled())
            return super().__getitem__(lfn)

        def get(self, lfn, default=None):
            collecting.append(gc.isenabled())
            return super().get(lfn, default)

    streamed = build_streamed_workflow(demo_quanta(), _options(), path_of)
    raws = {lfn for _, lfns in streamed.jobs_reading_inputs() for lfn in lfns}
    prepare_mod._write_streamed_inputs(
        streamed, [(Checks.fromkeys(raws, [1, "s"]), tmp_path / "c", "--input-checks")]
    )
    assert collecting and not any(collecting) and gc.isenabled()
