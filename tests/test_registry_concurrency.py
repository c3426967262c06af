"""Several processes writing to one registry never lose or duplicate a registration."""

from __future__ import annotations

import contextlib
import multiprocessing

import pytest
from conftest_repo import db_url, populate, postgres_schema_url  # noqa: F401

from supertask.repo.dataset import DatasetType
from supertask.repo.registry import Registry

RAW = DatasetType("raw", ("instrument", "visit", "detector"), "NumpyArray")
N_WORKERS = 3  # each owns one detector (0..2); all share detector 3
N_VISITS = 6
N_DETECTORS = 4


def _worker(url: str, worker: int, barrier, queue) -> None:
    try:
        reg = Registry(url)
        barrier.wait(timeout=60)
        # Every worker registers the shared run, dataset type and some shared units...
        reg.registerRun("shared")
        reg.registerDatasetType(RAW)
        reg.insertUnits("detector", [{"instrument": "Cam", "detector": 100 + d} for d in range(10)])
        for visit in range(N_VISITS):
            # ...its own datasets (one detector per worker) in small transactions, interleaved with
            # the others, and the same "shared" datasets (detector 3) as every other worker.
            own = {"dataId": {"instrument": "Cam", "visit": visit, "detector": worker}, "path": f"w{worker}"}
            same = {
                "dataId": {"instrument": "Cam", "visit": visit, "detector": 3},
                "path": "s",
                "checksum": "c",
            }
            reg.insertDatasets(RAW, "shared", [own | {"checksum": f"w{worker}"}, same])
        reg.close()
        queue.put((worker, None))
    except BaseException as err:  # report to the parent, which fails the test
        queue.put((worker, repr(err)))


@pytest.mark.slow
def test_concurrent_writers_register_every_dataset_exactly_once(db_url):  # noqa: F811
    reg = Registry.create(db_url)
    populate(reg, n_visits=N_VISITS, n_detectors=N_DETECTORS)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(N_WORKERS)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(db_url, w, barrier, queue)) for w in range(N_WORKERS)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results == dict.fromkeys(range(N_WORKERS))
    # Own datasets once each, shared ones (detector 3) once in total, ids unique.
    found = reg.queryDatasets(RAW, ["shared"])
    assert len(found) == N_VISITS * N_DETECTORS
    assert len({d.id for d in found}) == len(found)
    assert reg.countDatasets(RAW) == N_VISITS * N_DETECTORS
    assert reg.countUnitRows("detector") == N_DETECTORS + 10
    reg.close()


def _putter(root: str, worker: int, barrier, queue) -> None:
    try:
        import numpy as np

        from supertask.repo.butler import Butler

        butler = Butler(root, run="puts")
        barrier.wait(timeout=60)
        for visit in range(N_VISITS):
            butler.put(np.full(3, worker), RAW, {"instrument": "Cam", "visit": visit, "detector": worker})
        butler.close()
        queue.put((worker, None))
    except BaseException as err:
        queue.put((worker, repr(err)))


@pytest.mark.slow
def test_concurrent_butler_puts_are_all_readable(tmp_path, db_url):  # noqa: F811
    import numpy as np

    from supertask.repo.butler import Butler
    from supertask.repo.dataset import Dataset

    root = tmp_path / "repo"
    with pytest.warns(UserWarning) if "supertask:supertask@" in db_url else contextlib.nullcontext():
        butler = Butler.create(root, db_url=None if db_url.startswith("sqlite") else db_url)
    populate(butler.registry, n_visits=N_VISITS, n_detectors=N_DETECTORS)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(N_WORKERS)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_putter, args=(str(root), w, barrier, queue)) for w in range(N_WORKERS)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results == dict.fromkeys(range(N_WORKERS))
    reader = Butler(root, collections=["puts"])
    found = reader.registry.queryDatasets(RAW, ["puts"])
    assert len(found) == N_VISITS * N_WORKERS
    for ds in found:
        np.testing.assert_array_equal(
            reader.get(Dataset(RAW, ds.dataId), verify=True), np.full(3, ds.dataId["detector"])
        )


N_RUN_WRITERS = 8


def _run_registrar(url: str, worker: int, barrier, queue) -> None:
    try:
        reg = Registry(url)
        barrier.wait(timeout=60)
        reg.registerRun("out", provenance={"pipeline": "p.yaml", "command_line": f"worker {worker}"})
        reg.close()
        queue.put((worker, None))
    except BaseException as err:
        queue.put((worker, repr(err)))


@pytest.mark.slow
def test_concurrent_run_registrations_keep_every_provenance_record(db_url):  # noqa: F811
    # Eight executions registering one RUN at the same moment: each record is kept (the
    # first as the run's provenance, the seven others under later_executions), none is
    # lost to a read-modify-write race.
    Registry.create(db_url).close()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(N_RUN_WRITERS)
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_run_registrar, args=(db_url, w, barrier, queue)) for w in range(N_RUN_WRITERS)
    ]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results == dict.fromkeys(range(N_RUN_WRITERS))
    reg = Registry(db_url)
    stored = reg.getRunProvenance("out")
    records = [stored["command_line"]] + [e["command_line"] for e in stored.get("later_executions", [])]
    assert sorted(records) == sorted(f"worker {w}" for w in range(N_RUN_WRITERS))
    reg.close()
