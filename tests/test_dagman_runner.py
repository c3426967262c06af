"""The DAGMan test runner refuses what DAGMan 25.x refuses and ends as DAGMan does.

Each parse rule is DAGMan's (src/condor_utils/dag_parser.cpp, src/condor_dagman/parse.cpp,
node.cpp); the messages are DAGMan's ``ERROR:`` lines. Outcome rules: the DAG exits with its
FINAL node's status, the FINAL node sees ``$(DAG_STATUS)`` / ``$(FAILED_COUNT)``, a removed
DAG has status 4, relative paths resolve against the caller's directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import htcondor2
import pytest
from support.dagman_runner import DagParseError, parse_dag, run_dag

SUB = """universe = vanilla
executable = /bin/sh
arguments = "-c 'echo $(JOB) retry=$(RETRY) status=$(DAG_STATUS) failed=$(FAILED_COUNT); exit $(bps_exit:0)'"
output = {dir}/$(JOB).$(Cluster).out
error = {dir}/$(JOB).$(Cluster).out
queue
"""


def _dag(tmp_path: Path, body: str, final: str | None = "FINAL fin job.sub\n") -> Path:
    (tmp_path / "job.sub").write_text(SUB.format(dir=tmp_path))
    dag = tmp_path / "t.dag"
    dag.write_text(body + (final or ""))
    return dag


def _refused(tmp_path: Path, body: str, message: str) -> None:
    dag = _dag(tmp_path, body)
    with pytest.raises(DagParseError, match=message):
        parse_dag(dag)
    result = run_dag(dag, cwd=tmp_path)
    assert result.exit_code == 1 and result.order == []
    assert "ERROR: " in (tmp_path / "t.dag.dagman.out").read_text()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("RETRY fin 2 UNLESS-EXIT 113\n", "RETRY node fin can not have a retry specification"),
        ("PRIORITY fin 5\n", "FINAL node fin can not have a priority"),
        ("CATEGORY fin io\n", "FINAL node fin can not be added to a category"),
        ("ABORT-DAG-ON fin 3\n", "FINAL node fin cannot have an ABORT-DAG-ON specification"),
        ("PARENT a CHILD fin\n", "Tried to add a parent to a Final node"),
        ("PARENT fin CHILD a\n", "Tried to add a child to a Final node"),
    ],
)
def test_the_final_node_takes_no_retry_priority_category_abort_or_edges(tmp_path, line, message):
    _refused(tmp_path, "JOB a job.sub\n" + line, message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("JOB parent job.sub\n", "Node name is a reserved word"),
        ("JOB all_nodes job.sub\n", "Node name is a reserved word"),
        ("JOB a+b job.sub\n", "illegal charater"),
        ("JOB a job.sub\nJOB a job.sub\n", "Node a already exists"),
        ("JOB a job.sub\nVARS b x=1\n", "Unknown node b referenced"),
        ("JOB a job.sub\nPARENT a CHILD b\n", "Unknown node b referenced"),
        ("JOB a job.sub\nPARENT a\n", "Missing CHILD specifier"),
    ],
)
def test_node_names_and_references_follow_dagman(tmp_path, body, message):
    _refused(tmp_path, body, message)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("VARS a\n", "No key=value pairs specified"),
        ("VARS a queue_x=1\n", "name can not begin with 'queue'"),
        ("VARS a x\n", "Key value pair missing value"),
        ("SCRIPT a run.sh\n", "Missing script type"),
        ("SCRIPT POST a\n", "No script specified"),
        ("SCRIPT DEFER 1 POST a run.sh\n", "Invalid DEFER time value 'POST'"),
        ("RETRY a -1\n", "Invalid max retry value '-1'"),
        ("RETRY a 2 UNLESS 3\n", "Unexpected token 'UNLESS'"),
        ("RETRY a 2 UNLESS-EXIT\n", "UNLESS-EXIT missing exit code"),
        ("PRIORITY a high\n", "Invalid priority value 'high'"),
        ("CATEGORY a\n", "No category name specified"),
        ("NOSUCH a\n", "'NOSUCH' is not a valid DAG command"),
    ],
)
def test_vars_script_retry_priority_category_syntax_follow_dagman(tmp_path, line, message):
    _refused(tmp_path, "JOB a job.sub\n" + line, message)


def test_the_real_refused_final_retry_gives_dagmans_own_message(tmp_path):
    # restart/: DAGMan 767 refused `RETRY bps_final 2 UNLESS-EXIT 113` with exactly this line.
    real = Path(__file__).parent / "data" / "real-htcondor" / "restart" / "u_stpeer_fail1.dag.dagman.out"
    expected = next(line for line in real.read_text().splitlines() if "retry specification" in line)
    dag = _dag(tmp_path, "JOB x job.sub\nRETRY bps_final 2 UNLESS-EXIT 113\n", "FINAL bps_final job.sub\n")
    with pytest.raises(DagParseError) as err:
        parse_dag(dag)
    assert str(err.value).startswith(expected.split("ERROR: ", 1)[1])


def test_nodes_may_be_named_before_they_are_defined(tmp_path):
    dag = parse_dag(_dag(tmp_path, "PARENT a CHILD b\nJOB a job.sub\nJOB b job.sub\n"))
    assert dag.nodes["b"].parents == {"a"}


def test_dag_exit_is_the_final_nodes_status(tmp_path):
    # A failed node does not fail the DAG when FINAL succeeds (DagStatus 2, exit 0): real
    # DAGMan's failure/ metrics say the same.
    dag = _dag(tmp_path, 'JOB a job.sub\nVARS a bps_exit="1"\nJOB b job.sub\nPARENT a CHILD b\n')
    result = run_dag(dag, cwd=tmp_path)
    assert (result.exit_code, result.dag_status) == (0, 2)
    assert result.status("b") == "STATUS_FUTILE" and result.order == ["a", "fin"]
    metrics = json.loads((tmp_path / "t.dag.metrics").read_text())
    assert (metrics["exitcode"], metrics["DagStatus"]) == (0, 2)
    # ... and a failing FINAL fails a DAG whose nodes all succeeded.
    (tmp_path / "t.dag.dagman.out").unlink()
    for p in tmp_path.glob("t.dag.rescue*"):
        p.unlink()
    (tmp_path / "f").mkdir()
    dag = _dag(tmp_path / "f", "JOB a job.sub\n", "FINAL fin job.sub\n" + 'VARS fin bps_exit="70"\n')
    assert run_dag(dag, cwd=tmp_path / "f").exit_code == 1


def test_without_a_final_node_a_failed_node_fails_the_dag(tmp_path):
    dag = _dag(tmp_path, 'JOB a job.sub\nVARS a bps_exit="1"\n', final=None)
    assert run_dag(dag, cwd=tmp_path).exit_code == 1


def test_the_final_node_sees_dag_status_and_failed_count(tmp_path):
    dag = _dag(tmp_path, 'JOB a job.sub\nVARS a bps_exit="1"\nJOB b job.sub\n')
    run_dag(dag, cwd=tmp_path)
    (log,) = tmp_path.glob("fin.*.out")
    assert log.read_text().split() == ["fin", "retry=0", "status=2", "failed=1"]


def test_a_removed_dag_has_status_4_a_rescue_dag_and_runs_the_final_node(tmp_path):
    dag = _dag(tmp_path, "JOB a job.sub\nJOB b job.sub\nJOB c job.sub\n")
    result = run_dag(dag, cwd=tmp_path, cancel_after=1)
    assert result.dag_status == 4 and result.order == ["a", "fin"]
    (log,) = tmp_path.glob("fin.*.out")
    assert "status=4" in log.read_text()
    rescue = (tmp_path / "t.dag.rescue001").read_text().splitlines()
    assert [line for line in rescue if line.startswith("DONE")] == ["DONE a"]


def test_dagman_retry_macro_counts_node_retries(tmp_path):
    dag = _dag(tmp_path, 'JOB a job.sub\nVARS a bps_exit="1"\nRETRY a 1\n')
    result = run_dag(dag, cwd=tmp_path)
    assert len(result.dag.nodes["a"].clusters) == 2
    logs = sorted(tmp_path.glob("a.*.out"))
    assert [p.read_text().split()[1] for p in logs] == ["retry=0", "retry=1"]


def test_relative_paths_resolve_against_the_callers_directory(tmp_path):
    # As real DAGMan: `CONFIG dagman.config` run from elsewhere is not found.
    dag = _dag(tmp_path, "CONFIG dagman.config\nJOB a job.sub\n")
    (tmp_path / "dagman.config").write_text("\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_dag(dag, cwd=elsewhere)
    assert result.exit_code == 1 and f"Unable to read config file {elsewhere}/dagman.config" in result.error
    assert run_dag(dag, cwd=tmp_path).exit_code == 0


def test_submit_events_carry_the_structured_node_name(tmp_path):
    dag = _dag(tmp_path, "JOB a job.sub\n")
    run_dag(dag, cwd=tmp_path)
    events = htcondor2.JobEventLog(str(tmp_path / "t.dag.nodes.log")).events(0)
    notes = [e["LogNotes"] for e in events if e.type == htcondor2.JobEventType.SUBMIT]
    assert notes == [
        '[ DAGNodeName = "a"; JobBatchName = "t" ]',
        '[ DAGNodeName = "fin"; JobBatchName = "t" ]',
    ]


# -- the halt file (what `bps cancel` creates) --------------------------------------------------

HALTING_SUB = """universe = vanilla
executable = /bin/sh
arguments = "-c 'touch {dir}/t.dag.halt; exit $(bps_exit:0)'"
output = {dir}/$(JOB).$(Cluster).out
error = {dir}/$(JOB).$(Cluster).out
queue
"""


def _halting_dag(tmp_path: Path, body: str) -> Path:
    """``_dag`` plus ``halt.sub``: a job that creates the DAG's halt file while it runs."""
    dag = _dag(tmp_path, body)
    (tmp_path / "halt.sub").write_text(HALTING_SUB.format(dir=tmp_path))
    return dag


def test_a_halt_file_created_while_a_job_runs_stops_submissions_and_final_sees_status_6(tmp_path):
    dag = _halting_dag(tmp_path, "JOB a halt.sub\nJOB b job.sub\nJOB c job.sub\nPARENT a CHILD b\n")
    result = run_dag(dag, cwd=tmp_path)
    # a finished and counts as done; neither b (its child) nor c (ready) was submitted.
    assert result.order == ["a", "fin"] and result.dag_status == 6
    assert (result.status("a"), result.status("c")) == ("STATUS_DONE", "STATUS_READY")
    (log,) = tmp_path.glob("fin.*.out")
    assert "status=6" in log.read_text()
    out = (tmp_path / "t.dag.dagman.out").read_text()
    assert "Exiting because DAG is halted and no jobs or scripts are running" in out
    rescue = (tmp_path / "t.dag.rescue001").read_text().splitlines()
    assert [line for line in rescue if line.startswith("DONE")] == ["DONE a"]
    metrics = json.loads((tmp_path / "t.dag.metrics").read_text())
    # The DAG ends with FINAL's status (here FINAL succeeded).
    assert (metrics["DagStatus"], metrics["exitcode"], result.exit_code) == (6, 0, 0)


def test_a_halted_dag_whose_final_node_fails_exits_1(tmp_path):
    dag = _halting_dag(tmp_path, "JOB a halt.sub\nJOB b job.sub\n")
    dag.write_text(dag.read_text() + 'VARS fin bps_exit="69"\n')
    result = run_dag(dag, cwd=tmp_path)
    assert (result.exit_code, result.dag_status, result.order) == (1, 6, ["a", "fin"])


def test_a_halt_file_there_before_the_run_halts_it_at_once(tmp_path):
    dag = _dag(tmp_path, "JOB a job.sub\nJOB b job.sub\n")
    (tmp_path / "t.dag.halt").touch()
    result = run_dag(dag, cwd=tmp_path)
    assert result.order == ["fin"] and result.dag_status == 6
    assert "DONE" not in (tmp_path / "t.dag.rescue001").read_text().split()


def test_a_halted_dag_submits_no_dagman_retry_but_still_runs_the_post_script(tmp_path):
    dag = _halting_dag(tmp_path, 'JOB a halt.sub\nVARS a bps_exit="1"\nRETRY a 2\n')
    post = tmp_path / "post.sh"
    post.write_text(f'#!/bin/sh\necho "$1" > {tmp_path}/post.ran\nexit "$1"\n')
    post.chmod(0o755)
    dag.write_text(dag.read_text() + f"SCRIPT POST a {post} $RETURN\n")
    result = run_dag(dag, cwd=tmp_path)
    assert len(result.dag.nodes["a"].clusters) == 1  # RETRY 2 would have submitted it again
    assert (tmp_path / "post.ran").read_text().strip() == "1"
    assert result.status("a") != "STATUS_DONE" and result.dag_status == 6


def test_halt_after_creates_the_halt_file_as_bps_cancel_does(tmp_path):
    dag = _dag(tmp_path, "JOB a job.sub\nJOB b job.sub\nJOB c job.sub\n")
    result = run_dag(dag, cwd=tmp_path, halt_after=2)
    assert result.order == ["a", "b", "fin"] and result.dag_status == 6
    assert (tmp_path / "t.dag.halt").exists()  # DAGMan never deletes it; the next submission does
