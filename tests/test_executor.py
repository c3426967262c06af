"""The multiprocessing executor: ordering, failures, timeouts, logs, skip-existing.

A small file-backed butler stands in for the repository here so that the scheduling
rules are checked on their own; ``test_execution_demo.py`` runs the real stack.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import time
from pathlib import Path

import pytest

from supertask.execution import run_graph
from supertask.graph.quantum_graph import QuantumGraph
from supertask.quantum import Quantum
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset, DatasetType

RAW = DatasetType("raw", ("detector",), "Pickle")
CALEXP = DatasetType("calexp", ("detector",), "Pickle")
SUMMARY = DatasetType("summary", (), "Pickle")


class FileDatastore:
    def __init__(self, root: Path):
        self.root = root

    def path(self, datasetType, dataId, run) -> str:
        key = "_".join(f"{k}{v}" for k, v in dataId.items()) or "global"
        return f"{run}/{datasetType.name}/{key}.pkl"

    def write(self, obj, datasetType, dataId, run):
        rel = self.path(datasetType, dataId, run)
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        data = pickle.dumps(obj)
        tmp.write_bytes(data)
        tmp.replace(target)
        return rel, len(data), str(hash(data))

    def read(self, path, storageClass):
        return pickle.loads((self.root / path).read_bytes())


class MemoryRegistry:
    def __init__(self):
        self.runs: dict[str, dict] = {}
        self.datasets: dict[tuple[str, str, DataId], dict] = {}

    def registerRun(self, name, provenance=None):
        self.runs[name] = provenance or {}

    def registerDatasetType(self, datasetType):
        pass

    def insertDatasets(self, datasetType, run, records):
        for record in records:
            key = (run, datasetType.name, record["dataId"])
            assert key not in self.datasets, f"registered twice: {key}"
            self.datasets[key] = record

    def insertDatasetGroups(self, run, groups, beforeCommit=None):
        for group in groups:
            for datasetType, record in group:
                self.insertDatasets(datasetType, run, [record])
        if beforeCommit is not None:
            beforeCommit()

    def removeDatasets(self, datasets):
        for d in datasets:
            del self.datasets[(d.run, d.datasetType.name, d.dataId)]

    def queryDatasets(self, name, collections):
        return [
            Dataset(SUMMARY if name == "summary" else CALEXP, d, run=r)
            for (r, n, d) in self.datasets
            if n == name and r in collections
        ]

    def getDatasetLocation(self, dataset):
        return (f"inputs/{dataset.datasetType.name}/detector{dataset.dataId['detector']}.pkl", 0, "")

    def registered(self, run: str, name: str) -> list[int]:
        return sorted(d["detector"] for (r, n, d) in self.datasets if r == run and n == name)


class Butler:
    def __init__(self, root: Path):
        self.datastore = FileDatastore(root)
        self.registry = MemoryRegistry()
        self.root = root


class CalibrateTask:
    """Doubles a raw value; misbehaves on request for one detector."""

    label = "calibrate"

    def __init__(self, fail_on=(), sleep_on=(), die_on=(), segfault_on=()):
        self.fail_on, self.sleep_on, self.die_on = set(fail_on), set(sleep_on), set(die_on)
        self.segfault_on = set(segfault_on)

    def runQuantum(self, quantum, butler):
        (raw,) = quantum.inputs["raw"]
        detector = raw.dataId["detector"]
        logging.getLogger("supertask.calibrate").info("calibrating detector %d", detector)
        print(f"stdout of detector {detector}")
        if detector in self.sleep_on:
            time.sleep(30)
        if detector in self.die_on:
            os.kill(os.getpid(), signal.SIGKILL)
        if detector in self.segfault_on:
            import faulthandler

            faulthandler.disable()  # pytest enables it; the point is the bare signal
            os.kill(os.getpid(), signal.SIGSEGV)
        if detector in self.fail_on:
            raise RuntimeError(f"bad pixels on detector {detector}")
        (out,) = quantum.outputs["calexp"]
        butler.put(butler.get(raw) * 2, out)


class SummaryTask:
    label = "summary"

    def runQuantum(self, quantum, butler):
        values = [butler.get(d) for d in quantum.inputs["calexp"]]
        (out,) = quantum.outputs["summary"]
        butler.put(sum(values), out)


def make_graph(
    tmp_path: Path, calibrate: CalibrateTask, detectors=(1, 2, 3, 4)
) -> tuple[Butler, QuantumGraph]:
    butler = Butler(tmp_path)
    summary_task = SummaryTask()
    quanta = []
    calexps = []
    for d in detectors:
        raw = Dataset(RAW, DataId(detector=d), id=d, run="inputs")
        (tmp_path / "inputs" / "raw").mkdir(parents=True, exist_ok=True)
        (tmp_path / "inputs" / "raw" / f"detector{d}.pkl").write_bytes(pickle.dumps(d))
        calexp = Dataset(CALEXP, DataId(detector=d))
        calexps.append(calexp)
        quanta.append(
            Quantum("calibrate", DataId(detector=d), {"raw": [raw]}, {"calexp": [calexp]}, task=calibrate)
        )
    quanta.append(
        Quantum(
            "summary",
            DataId(),
            {"calexp": calexps},
            {"summary": [Dataset(SUMMARY, DataId())]},
            task=summary_task,
        )
    )
    graph = QuantumGraph(list(reversed(quanta)), pipelineYaml="", configs={}, metadata={"output_run": "out"})
    return butler, graph


def test_all_quanta_run_in_dependency_order_and_outputs_are_registered(tmp_path):
    butler, graph = make_graph(tmp_path, CalibrateTask())
    result = run_graph(butler, graph, "out", processes=2)
    assert result.ok, result.failures
    assert butler.registry.registered("out", "calexp") == [1, 2, 3, 4]
    assert pickle.loads((tmp_path / "out/summary/global.pkl").read_bytes()) == 2 * (1 + 2 + 3 + 4)
    assert result.counts["calibrate"]["succeeded"] == 4 and result.counts["summary"]["succeeded"] == 1


def test_run_records_provenance_before_running(tmp_path):
    butler, graph = make_graph(tmp_path, CalibrateTask())
    run_graph(butler, graph, "out", processes=1, command_line="supertask run x")
    assert butler.registry.runs["out"]["command_line"] == "supertask run x"


def test_keep_going_skips_only_downstream_of_a_failure(tmp_path):
    butler, graph = make_graph(tmp_path, CalibrateTask(fail_on={2}))
    result = run_graph(butler, graph, "out", processes=2)
    assert not result.ok
    assert result.counts["calibrate"]["succeeded"] == 3
    assert result.counts["calibrate"]["failed"] == 1
    assert result.counts["summary"]["skipped_upstream"] == 1
    assert butler.registry.registered("out", "calexp") == [1, 3, 4]
    (failure,) = [f for f in result.failures if f.label == "calibrate"]
    assert "bad pixels on detector 2" in failure.reason
    assert "bad pixels on detector 2" in failure.log_tail


def test_fail_fast_stops_at_the_first_failure(tmp_path):
    task = CalibrateTask()
    butler, graph = make_graph(tmp_path, task, detectors=range(1, 9))
    first = next(q for q in graph if q.taskLabel == "calibrate")
    task.fail_on = {first.dataId["detector"]}
    result = run_graph(butler, graph, "out", processes=1, fail_fast=True)
    assert result.counts["calibrate"]["failed"] == 1
    # with one worker the first quantum scheduled fails, so at least one other never runs
    assert result.counts["calibrate"]["succeeded"] + result.counts["calibrate"]["not_run"] == 7
    assert result.counts["calibrate"]["not_run"] >= 1
    assert not result.ok


def test_timeout_kills_the_quantum_and_reports_it(tmp_path):
    butler, graph = make_graph(tmp_path, CalibrateTask(sleep_on={3}))
    result = run_graph(butler, graph, "out", processes=2, timeout=1.0)
    assert result.counts["calibrate"]["timed_out"] == 1
    assert result.counts["calibrate"]["succeeded"] == 3
    assert result.counts["summary"]["skipped_upstream"] == 1
    (failure,) = [f for f in result.failures if f.label == "calibrate"]
    assert "timed out after 1 s" in failure.reason


def test_a_worker_killed_midway_is_reported_and_replaced(tmp_path):
    butler, graph = make_graph(tmp_path, CalibrateTask(die_on={2}))
    result = run_graph(butler, graph, "out", processes=1)
    assert result.counts["calibrate"]["failed"] == 1
    assert result.counts["calibrate"]["succeeded"] == 3  # the replacement worker ran the rest
    (failure,) = [f for f in result.failures if f.label == "calibrate"]
    assert "worker process died" in failure.reason
    assert "SIGKILL" in failure.reason and "out-of-memory" in failure.reason


def test_a_segfault_is_reported_as_one_not_as_out_of_memory(tmp_path):
    butler, graph = make_graph(tmp_path, CalibrateTask(segfault_on={3}))
    result = run_graph(butler, graph, "out", processes=1)
    (failure,) = [f for f in result.failures if f.label == "calibrate"]
    assert "signal 11 (SIGSEGV, segmentation fault" in failure.reason
    assert "memory" not in failure.reason


def test_a_rerun_into_a_run_holding_the_outputs_is_refused_before_anything_is_written(tmp_path):
    from supertask.repo.registry import OutputExistsError

    butler, graph = make_graph(tmp_path, CalibrateTask())
    assert run_graph(butler, graph, "out", processes=1).ok
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*.pkl")}
    registered = dict(butler.registry.datasets)
    for quantum in graph:
        if quantum.taskLabel == "calibrate":
            quantum.task.fail_on = {1, 2, 3, 4}  # would fail if it ran at all
    with pytest.raises(
        OutputExistsError,
        match=r"5 quanta would write outputs already registered in RUN 'out'.*--skip-existing.*--clobber-outputs.*-o NEW_RUN",
    ):
        run_graph(butler, graph, "out", processes=1)
    assert butler.registry.datasets == registered
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*.pkl")} == before


def test_clobber_outputs_unregisters_and_replaces_them(tmp_path):
    butler, graph = make_graph(tmp_path, CalibrateTask())
    assert run_graph(butler, graph, "out", processes=1).ok
    for quantum in graph:
        if quantum.taskLabel == "calibrate":
            quantum.task.fail_on = {2}
    result = run_graph(butler, graph, "out", processes=1, clobber_outputs=True)
    assert result.counts["calibrate"]["succeeded"] == 3 and result.counts["calibrate"]["failed"] == 1
    # the failed quantum's old output was unregistered, the others registered anew
    assert butler.registry.registered("out", "calexp") == [1, 3, 4]


def test_each_quantum_log_captures_logging_and_stdout(tmp_path):
    butler, graph = make_graph(tmp_path, CalibrateTask())
    run_graph(butler, graph, "out", processes=1)
    logs = sorted((tmp_path / "out" / "logs" / "calibrate").glob("*.log"))
    assert len(logs) == 4
    text = "".join(p.read_text() for p in logs)
    for d in (1, 2, 3, 4):
        assert f"calibrating detector {d}" in text
        assert f"stdout of detector {d}" in text


def test_skip_existing_reruns_only_what_is_missing(tmp_path):
    butler, graph = make_graph(tmp_path, CalibrateTask(fail_on={4}))
    first = run_graph(butler, graph, "out", processes=2)
    assert first.counts["calibrate"]["succeeded"] == 3
    for quantum in graph:
        if quantum.taskLabel == "calibrate":
            quantum.task.fail_on = set()
    second = run_graph(butler, graph, "out", processes=2, skip_existing=True)
    assert second.ok
    assert second.counts["calibrate"]["skipped_existing"] == 3
    assert second.counts["calibrate"]["succeeded"] == 1
    assert second.counts["summary"]["succeeded"] == 1


_ORPHAN_DRIVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from test_executor import CalibrateTask, make_graph
from supertask.execution import run_graph
butler, graph = make_graph(Path(sys.argv[2]), CalibrateTask(sleep_on={1}))
run_graph(butler, graph, "out", processes=2)
"""


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the workers")
def test_workers_exit_when_the_parent_is_killed(tmp_path):
    # One worker sleeps in a quantum, the other waits in recv for work that depends on it;
    # SIGKILL of the parent (an out-of-memory kill) must take both down.
    import subprocess
    import sys

    driver = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_DRIVER, str(Path(__file__).parent), str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while len(_children(driver.pid)) < 2 or not (tmp_path / "out" / "calexp").is_dir():
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        time.sleep(0.5)
        workers = _children(driver.pid)
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if _alive(w)], "workers outlived their parent"
    finally:
        driver.kill()
        for w in workers | _children(driver.pid):
            if _alive(w):
                os.kill(w, signal.SIGKILL)


def test_zero_processes_is_refused(tmp_path):
    butler, graph = make_graph(tmp_path, CalibrateTask())
    with pytest.raises(ValueError, match="at least 1"):
        run_graph(butler, graph, "out", processes=0)


class SyncingDatastore(FileDatastore):
    """Records writes made without fsync (from any process) until ``sync`` is called."""

    def write(self, obj, datasetType, dataId, run, *, fsync=True):
        rel = super().write(obj, datasetType, dataId, run)
        if not fsync:
            with open(self.root / "unsynced.log", "a") as fh:
                fh.write(rel[0] + "\n")
        return rel

    def sync(self):
        log = self.root / "unsynced.log"
        if log.exists():
            with open(self.root / "synced.log", "a") as fh:
                fh.write(log.read_text())
            log.unlink()

    def unsynced(self) -> set[str]:
        log = self.root / "unsynced.log"
        return set(log.read_text().split()) if log.exists() else set()


class CheckingRegistry(MemoryRegistry):
    """Refuses to register a file that a worker wrote without fsync and nobody synced yet."""

    def __init__(self, datastore):
        super().__init__()
        self.datastore = datastore

    def insertDatasets(self, datasetType, run, records):
        unsynced = self.datastore.unsynced()
        late = [r["path"] for r in records if r["path"] in unsynced]
        assert not late, f"registered before sync: {late}"
        super().insertDatasets(datasetType, run, records)


def test_workers_skip_fsync_and_the_main_process_syncs_before_registering(tmp_path):
    butler, graph = make_graph(tmp_path, CalibrateTask())
    butler.datastore = SyncingDatastore(tmp_path)
    butler.registry = CheckingRegistry(butler.datastore)
    result = run_graph(butler, graph, "out", processes=2)
    assert result.ok, result.failures
    assert butler.registry.registered("out", "calexp") == [1, 2, 3, 4]
    synced = set((tmp_path / "synced.log").read_text().split())
    assert {r["path"] for r in butler.registry.datasets.values()} == synced  # every output went unsynced
