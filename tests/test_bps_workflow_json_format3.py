"""``workflow.json`` format 3: label defaults once, jobs by what differs, parents by position.

The oracle is `load_workflow`: a workflow saved and loaded again is the workflow it was
(`workflow_to_json` of both, field by field), whether written from its jobs or from a
streamed workflow's columns; and the files an earlier release wrote (format 2, kept under
``tests/data``, written by that release's `save_workflow` for the workflows built here)
load to the same workflow as format 3 does.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from test_bps_workflow_builder import demo_quanta, options, path_of
from test_bps_workflow_stream import _options
from test_bps_workflow_stream_writers import _with_added_arguments

from bps.clustering import ClusterRule
from bps.workflow import GenericWorkflow, Job, Resources, WorkflowFile, dataset_lfn
from bps.workflow_builder import build_workflow
from bps.workflow_io import (
    WorkflowFileError,
    load_header,
    load_workflow,
    save_workflow,
    workflow_site,
    workflow_to_json,
)

DATA = Path(__file__).parent / "data"
RULES = [
    ClusterRule("per_visit", ("isr",), ("visit",)),
    ClusterRule("per_patch", ("warp", "coadd"), ("patch",)),
]


def _round_trip(wf: GenericWorkflow, path: Path) -> tuple[GenericWorkflow, dict]:
    save_workflow(wf, path)
    return load_workflow(path), json.loads(path.read_text())


def _demo_with_added_arguments() -> GenericWorkflow:
    """The demo workflow of the format-2 fixture ``workflow_format2_demo.json``."""
    wf = build_workflow(demo_quanta(), options(throttles={"isr": 2}), path_of)
    wf.jobs["isr_2_Cam_1"].arguments += ["--input-locations", "/sub/input_locations/000000.json"]
    return wf


def test_a_built_workflow_loads_back_equal_and_stores_label_defaults_once(tmp_path):
    wf = _demo_with_added_arguments()
    again, data = _round_trip(wf, tmp_path / "workflow.json")
    assert data["format"] == 3
    assert workflow_to_json(again) == workflow_to_json(wf)
    assert again.parents == wf.parents and list(again.jobs) == list(wf.jobs)
    assert [row["label"] for row in data["labels"]] == ["isr", "warp", "coadd", "summary"]
    assert data["labels"][0]["throttle"] == "isr" and data["labels"][1]["throttle"] is None
    assert all(len(row) == 7 for row in data["jobs"])  # no job differs from its label's defaults
    # one command line for every job but the one with an added argument
    assert len(data["arguments"]) == 2
    assert data["arguments"][0] == [
        "--graph", "/g.qgraph", "--quantum", -2, "--job", -1, "--manifest-dir", "/sub/manifests",
    ]  # fmt: skip


def test_a_clustered_workflow_names_each_quantum_of_its_command_line_by_position(tmp_path):
    wf = build_workflow(demo_quanta(), options(rules=RULES), path_of)
    again, data = _round_trip(wf, tmp_path / "workflow.json")
    assert workflow_to_json(again) == workflow_to_json(wf)
    per_visit = next(row for row in data["jobs"] if row[0] == "per_visit_1")
    assert data["arguments"][per_visit[3]][:6] == ["--graph", "/g.qgraph", "--quantum", -2, "--quantum", -3]


def test_a_streamed_workflow_is_written_from_its_columns_and_loads_as_the_built_one(tmp_path):
    built, streamed = _with_added_arguments(demo_quanta(), _options())
    from_columns, _ = _round_trip(streamed, tmp_path / "streamed.json")
    from_jobs, _ = _round_trip(built, tmp_path / "built.json")
    assert workflow_to_json(from_columns) == workflow_to_json(streamed) == workflow_to_json(from_jobs)
    assert from_columns.parents == dict(streamed.parents.items())


def test_a_job_that_differs_from_its_labels_defaults_states_only_what_differs(tmp_path):
    wf = build_workflow(demo_quanta(), options(), path_of)
    job = wf.jobs["isr_2_Cam_1"]
    job.resources = Resources(memory_mb=9000)
    job.tags = {"task_labels": "isr", "note": "big"}
    job.priority = 5
    job.retry = replace(job.retry, retries=7, no_retry_exit_codes=(1, 2))
    again, data = _round_trip(wf, tmp_path / "workflow.json")
    assert workflow_to_json(again) == workflow_to_json(wf)
    (row,) = [row for row in data["jobs"] if len(row) > 7]
    assert row[0] == "isr_2_Cam_1" and sorted(row[7]) == ["priority", "resources", "retry", "tags"]
    assert again.jobs["isr_2_Cam_1"].retry.no_retry_exit_codes == (1, 2)
    assert again.jobs["isr_1_Cam_1"].resources == Resources()  # the label's own jobs keep the defaults
    # each job has its own tags, though jobs of a label share them in the file
    again.jobs["isr_1_Cam_1"].tags["x"] = "y"
    assert "x" not in again.jobs["isr_1_Cam_2"].tags


def test_file_rows_leave_out_a_name_the_reader_recomputes_and_keep_any_other(tmp_path):
    wf = GenericWorkflow("w", str(tmp_path), "g", "r", "run")
    plain = WorkflowFile(
        dataset_lfn("raw", {"visit": 1, "band": "r"}), "raw", {"visit": 1, "band": "r"}, "raw/1"
    )
    staged = WorkflowFile("raw.renamed-at-staging", "raw", {"visit": 2, "band": "r"}, "raw/2")
    flagged = WorkflowFile(
        dataset_lfn("raw", {"visit": 3, "band": True}), "raw", {"visit": 3, "band": True}, "raw/3"
    )
    wf.add_job(Job("a", "isr", [0], ["--job", "a"], inputs=[plain, staged, flagged]))
    out = WorkflowFile(dataset_lfn("calexp", {"visit": 1}), "calexp", {"visit": 1}, "calexp/1", producer="a")
    wf.jobs["a"].outputs.append(out)
    wf.add_job(Job("b", "warp", [1], ["--job", "b"], inputs=[out]), parents=["a"])
    again, data = _round_trip(wf, tmp_path / "workflow.json")
    assert workflow_to_json(again) == workflow_to_json(wf)
    # a bool would come back from JSON as it went, but only ints and strs are trusted to
    assert [len(row) for row in data["files"]] == [4, 5, 5, 4]
    assert data["files"][1][4] == "raw.renamed-at-staging"
    assert data["files"][3][3] == 0 and data["jobs"][1][6] == [0]  # producer and parent by position


def test_a_job_without_an_entry_in_parents_has_none_after_loading(tmp_path):
    wf = GenericWorkflow("w", str(tmp_path), "g", "r", "run")
    wf.jobs["lone"] = Job("lone", "isr", [0], [])
    wf.add_job(Job("b", "isr", [1], []), parents=["lone"])
    again, data = _round_trip(wf, tmp_path / "workflow.json")
    assert data["jobs"][0][6] is None
    assert again.parents == {"b": ["lone"]}


def test_an_argument_that_is_not_a_string_is_refused_when_saving(tmp_path):
    """A number in a command line would read back as a code for the job's own values."""
    wf = GenericWorkflow("w", str(tmp_path), "g", "r", "run")
    wf.add_job(Job("a", "isr", [0], ["--batch-size", 5]))  # type: ignore[list-item]
    with pytest.raises(ValueError, match="job 'a' has the argument 5, not a string"):
        save_workflow(wf, tmp_path / "workflow.json")
    assert not (tmp_path / "workflow.json").exists()


def test_parents_of_a_job_not_in_the_workflow_are_refused_when_saving(tmp_path):
    wf = GenericWorkflow("w", str(tmp_path), "g", "r", "run")
    wf.add_job(Job("a", "isr", [0], []))
    wf.parents["ghost"] = ["a"]
    with pytest.raises(ValueError, match="'ghost', which is not a job of the workflow"):
        save_workflow(wf, tmp_path / "workflow.json")
    assert not (tmp_path / "workflow.json").exists()


@pytest.mark.parametrize(
    ("fixture", "built"),
    [
        ("workflow_format2_demo.json", _demo_with_added_arguments),
        (
            "workflow_format2_clustered.json",
            lambda: build_workflow(demo_quanta(), options(rules=RULES), path_of),
        ),
    ],
)
def test_a_format_2_file_loads_to_the_workflow_format_3_loads(tmp_path, fixture, built):
    old = load_workflow(DATA / fixture)
    new, _ = _round_trip(built(), tmp_path / "workflow.json")
    assert workflow_to_json(old) == workflow_to_json(new)
    assert old.parents == new.parents


def test_a_format_1_file_still_loads(tmp_path):
    wf = _demo_with_added_arguments()
    (tmp_path / "old.json").write_text(json.dumps(workflow_to_json(wf), indent=1))
    assert workflow_to_json(load_workflow(tmp_path / "old.json")) == workflow_to_json(wf)
    assert load_header(tmp_path / "old.json")["name"] == "wf"


def test_a_truncated_file_is_refused_in_one_line_with_the_fix(tmp_path):
    wf = _demo_with_added_arguments()
    save_workflow(wf, tmp_path / "workflow.json")
    text = (tmp_path / "workflow.json").read_text()
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    with pytest.raises(WorkflowFileError, match="prepare the submit directory again") as err:
        load_workflow(tmp_path / "cut.json")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d["jobs"][0].__setitem__(1, 99),  # no such label row
        lambda d: d["jobs"][0].__setitem__(3, 99),  # no such command line
        lambda d: d["jobs"][2].__setitem__(6, [999]),  # no such parent
        lambda d: d["arguments"][0].__setitem__(0, 7),  # neither a string nor a code
        lambda d: d["jobs"][0].append({"name": "other"}),  # not a label default
        lambda d: d["files"][0].__setitem__(1, []),  # values for no keys
        lambda d: d.pop("labels"),
    ],
)
def test_a_damaged_file_is_refused_in_one_line_with_the_fix(tmp_path, damage):
    save_workflow(_demo_with_added_arguments(), tmp_path / "workflow.json")
    data = json.loads((tmp_path / "workflow.json").read_text())
    damage(data)
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(
        WorkflowFileError, match=r"bad.json is damaged \(.*\); prepare the submit directory"
    ) as err:
        load_workflow(tmp_path / "bad.json")
    assert "\n" not in str(err.value)


def test_the_header_is_read_from_the_start_of_the_file_alone(tmp_path):
    wf = _demo_with_added_arguments()
    wf.site.wms = "htcondor"
    wf.site.environment = {"BIG": "x" * 200_000}  # longer than the first read
    save_workflow(wf, tmp_path / "workflow.json")
    text = (tmp_path / "workflow.json").read_text()
    at = text.index('"files":[') + 20
    (tmp_path / "cut.json").write_text(text[:at] + "not JSON at all")  # the rest is never parsed
    header = load_header(tmp_path / "cut.json")
    assert header["name"] == "wf" and header["site"]["environment"]["BIG"] == "x" * 200_000
    assert workflow_site(tmp_path / "cut.json") == wf.site
    (tmp_path / "headless.json").write_text('{"format": 3, "files": [], "name": "w"}')
    with pytest.raises(WorkflowFileError, match="header fields are missing or not first"):
        load_header(tmp_path / "headless.json")
    (tmp_path / "short.json").write_text('{"format": 3, "name": "w", "si')
    with pytest.raises(WorkflowFileError, match="no complete header"):
        load_header(tmp_path / "short.json")


def test_bps_finds_the_workflow_system_from_the_header_when_the_run_record_has_none(tmp_path):
    from bps.cli import _wms_of

    wf = _demo_with_added_arguments()
    wf.site.wms = "pegasus"
    save_workflow(wf, tmp_path / "workflow.json")
    text = (tmp_path / "workflow.json").read_text()
    (tmp_path / "workflow.json").write_text(text[: text.index('"jobs":[')])  # jobs never read
    assert _wms_of(tmp_path) == "pegasus"


def test_compare_submit_dirs_compares_workflow_files_by_the_workflow_they_hold(tmp_path):
    """The oracle of a format change: main's format-2 file and this format-3 file of one workflow
    are the same submit directory to `compare_submit_dirs`; another workflow is not."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "compare_submit_dirs", Path(__file__).parents[1] / "benchmarks" / "compare_submit_dirs.py"
    )
    assert spec is not None and spec.loader is not None
    compare_submit_dirs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare_submit_dirs)
    for d in ("before", "after", "other"):
        (tmp_path / d).mkdir()
    (tmp_path / "before" / "workflow.json").write_bytes((DATA / "workflow_format2_demo.json").read_bytes())
    save_workflow(_demo_with_added_arguments(), tmp_path / "after" / "workflow.json")
    changed = _demo_with_added_arguments()
    changed.jobs["warp_0_sm_0_1"].priority = 1
    save_workflow(changed, tmp_path / "other" / "workflow.json")
    assert compare_submit_dirs.compare(tmp_path / "before", tmp_path / "after") == []
    (problem,) = compare_submit_dirs.compare(tmp_path / "before", tmp_path / "other")
    assert problem.startswith("contents differ: workflow.json")


def test_a_streamed_file_whose_name_is_not_rebuilt_keeps_it_as_from_its_jobs(tmp_path):
    """A name that is not `dataset_lfn` of the row (put into the columns by hand: a streamed
    workflow makes none; the first file of its type, which the columns writer checks in each
    chunk) or a value JSON might not give back as it was (a float) keeps the name in the row,
    as the jobs' writer, which checks every name, keeps it."""
    import io

    from bps import workflow_io

    _, streamed = _with_added_arguments(demo_quanta(), _options())
    c = streamed.jobs.columns()
    c.lfns[0] = "renamed"
    c.values[1] = (*c.values[1][:-1], 1.5)
    c.names[0] += ' "é"'  # a name JSON escapes (safe_name makes none): the writer's other path
    from_columns, from_jobs = io.StringIO(), io.StringIO()
    workflow_io._write_columns(streamed, from_columns)
    workflow_io._write_objects(streamed, from_jobs)
    assert from_columns.getvalue() == from_jobs.getvalue()
    rows = json.loads(from_columns.getvalue())["files"]
    assert [len(row) for row in rows].count(5) == 2 and "renamed" in {row[-1] for row in rows}
    (tmp_path / "workflow.json").write_text(from_columns.getvalue())
    assert workflow_to_json(load_workflow(tmp_path / "workflow.json")) == workflow_to_json(streamed)


@pytest.mark.parametrize("chunk", [1, 2, 3, 1024])
def test_a_streamed_workflow_in_chunks_of_any_size_is_written_as_from_its_jobs(tmp_path, monkeypatch, chunk):
    """The columns writer makes a chunk's jobs by ``map`` when all its jobs have one input
    (or output) file or no parents, else job by job: chunks of one job take the first path
    for every job, larger ones mix both; every size writes the bytes the jobs' writer does."""
    import io

    from bps import workflow_io

    _, streamed = _with_added_arguments(demo_quanta(), _options())
    from_jobs = io.StringIO()
    workflow_io._write_objects(streamed, from_jobs)
    monkeypatch.setattr(workflow_io, "_CHUNK", chunk)
    from_columns = io.StringIO()
    workflow_io._write_columns(streamed, from_columns)
    assert from_columns.getvalue() == from_jobs.getvalue()
    counts = {n for j in streamed.jobs.values() for n in (len(j.inputs), len(j.outputs))}
    assert 1 in counts and len(counts) > 1  # the demo has jobs of one file and of several


@pytest.mark.parametrize(
    "name", ["calibrate_1_2", "", " ~!#", 'a"b', "a\\b", "a\x7fb", "a\x1fb", "a\tb", "é", "a\u2028b"]
)
def test_a_job_name_is_written_bare_only_when_json_would_write_it_as_itself(name):
    """The columns writer puts names between quotes as they are only if JSON writes them so."""
    from bps import workflow_io

    assert workflow_io._plain(name) == (json.dumps(name) == f'"{name}"')


def _one_in_one_out(reads) -> list:
    """Quanta of label ``isr``, one per entry of ``reads``: each reads the raw of that visit
    (``("raw", visit)``) or the calexp an earlier one wrote (``("calexp", visit)``) and writes
    the calexp of its own position."""
    from test_bps_workflow_builder import CALEXP, RAW, add_quantum, ds

    quanta: list = []
    for i, (kind, visit) in enumerate(reads):
        did = dict(instrument="Cam", visit=visit, detector=1)
        source = (
            ds(RAW, "raw/run", **did)
            if kind == "raw"
            else ds(CALEXP, instrument="Cam", visit=visit, detector=1)
        )
        add_quantum(
            quanta,
            "isr",
            dict(instrument="Cam", visit=100 + i, detector=1),
            [source],
            [ds(CALEXP, instrument="Cam", visit=100 + i, detector=1)],
        )
    return quanta


@pytest.mark.parametrize(
    ("reads", "chunk", "taken"),
    [
        ([("raw", 1), ("raw", 2), ("raw", 3), ("raw", 4)], 2, [True, True]),  # consecutive, all new: in C
        (
            [("raw", 1), ("raw", 1), ("raw", 2), ("raw", 2)],
            2,
            [False, False],
        ),  # an input read twice in a chunk
        (
            [("raw", 1), ("raw", 2), ("raw", 1), ("raw", 3)],
            2,
            [True, False],
        ),  # an input numbered by an earlier chunk
        ([("raw", 1), ("calexp", 100), ("raw", 2), ("raw", 3)], 4, [False]),  # an input an earlier job wrote
    ],
)
def test_chunks_of_one_new_input_and_output_per_job_are_numbered_at_once_and_others_job_by_job(
    monkeypatch, reads, chunk, taken
):
    """Consecutive jobs reading one file and writing one, all files not yet numbered, take the
    writer's path in C (`_new_pairs`); a repeated or earlier-numbered file sends the chunk job
    by job. Both write the bytes of the jobs' writer, files numbered in order of first mention."""
    import io

    from bps import workflow_io
    from bps.workflow_stream import build_streamed_workflow

    streamed = build_streamed_workflow(_one_in_one_out(reads), _options(), path_of).workflow
    from_jobs = io.StringIO()
    workflow_io._write_objects(streamed, from_jobs)
    took: list[bool] = []
    new_pairs = workflow_io._new_pairs

    def spy(*args):
        found = new_pairs(*args)
        took.append(found is not None)
        return found

    monkeypatch.setattr(workflow_io, "_CHUNK", chunk)
    monkeypatch.setattr(workflow_io, "_new_pairs", spy)
    from_columns = io.StringIO()
    workflow_io._write_columns(streamed, from_columns)
    assert from_columns.getvalue() == from_jobs.getvalue()
    assert took == taken


def test_only_consecutive_jobs_of_one_entry_each_are_read_as_one_slice():
    """`consecutive` takes only consecutive job numbers, which the writers then read as one slice."""
    from array import array

    from bps.column_runs import consecutive, one_each

    assert consecutive(array("q", [4, 5, 6])) == 4 and consecutive(array("q", [7])) == 7
    assert consecutive(array("q", [4, 6, 5])) is None
    assert consecutive(array("q", [4, 4, 6])) is None
    assert one_each(array("q", [0, 1, 2, 3]), 0, 3) == 0 and one_each(array("q", [5, 5, 6, 7]), 1, 2) == 5
    assert one_each(array("q", [0, 0, 2, 3]), 0, 3) is None  # none, then two: three in all
