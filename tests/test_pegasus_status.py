"""Reading Pegasus's jobstate.log and job output files without Pegasus."""

from __future__ import annotations

from bps.wms.pegasus.status import is_auxiliary, job_files, match_job, read_jobstate


def test_last_event_gives_the_state_and_submits_count_attempts(tmp_path):
    log = tmp_path / "jobstate.log"
    log.write_text(
        "1 INTERNAL *** DAGMAN_STARTED 1 ***\n"
        "2 run_quantum_a SUBMIT 1.0 condorpool - 1\n"
        "3 run_quantum_a POST_SCRIPT_FAILURE 1.0 condorpool - 1\n"
        "4 run_quantum_a SUBMIT 2.0 condorpool - 1\n"
        "5 run_quantum_a EXECUTE 2.0 condorpool - 1\n"
        "6 run_quantum_b SUBMIT 3.0 condorpool - 2\n"
        "7 run_quantum_b JOB_HELD 3.0 condorpool - 2\n"
        "8 run_quantum_c SUBMIT 4.0 condorpool - 3\n"
        "9 run_quantum_c POST_SCRIPT_SUCCESS 4.0 condorpool - 3\n"
        "garbage\n"
    )
    run = read_jobstate(log)
    assert {n: (j.state, j.attempts) for n, j in run.jobs.items()} == {
        "run_quantum_a": ("running", 2),
        "run_quantum_b": ("held", 1),
        "run_quantum_c": ("succeeded", 1),
    }
    assert run.jobs["run_quantum_a"].site == "condorpool"
    assert run.dagman_status is None


def test_a_resubmitted_dag_is_running_again_until_it_finishes(tmp_path):
    log = tmp_path / "jobstate.log"
    log.write_text("1 INTERNAL *** DAGMAN_STARTED 1 ***\n2 INTERNAL *** DAGMAN_FINISHED 1 ***\n")
    assert read_jobstate(log).dagman_status == 1
    with log.open("a") as stream:
        stream.write("3 INTERNAL *** DAGMAN_STARTED 1 ***\n")
    assert read_jobstate(log).dagman_status is None
    assert read_jobstate(tmp_path / "absent.log").jobs == {}


def test_dag_nodes_map_to_job_ids_through_the_transformation_name():
    ids = {"isr_1", "quantum_x"}
    assert match_job("run_quantum_isr_1", ["run_quantum", "bps"], ids) == "isr_1"
    assert match_job("bps_finalize", ["run_quantum", "bps"], ids) is None
    assert match_job("stage_in_local_0", ["run_quantum"], ids) is None
    assert is_auxiliary("stage_out_local_condorpool_1_0") and not is_auxiliary("run_quantum_isr_1")


def test_job_files_finds_the_newest_attempt_of_each_node(tmp_path):
    (tmp_path / "00" / "01").mkdir(parents=True)
    for name in (
        "run_quantum_a.out.000",
        "run_quantum_a.out.001",
        "run_quantum_a.err.000",
        "run_quantum_b.sub",
    ):
        (tmp_path / "00" / "01" / name).write_text(name)
    files = job_files(tmp_path)
    assert set(files) == {"run_quantum_a"}
    out, err = files["run_quantum_a"]
    assert out.name == "run_quantum_a.out.001" and err.name == "run_quantum_a.err.000"
