"""`Registry.getDatasetRecordsById`: registered records of many ids, read by ranges where dense."""

from __future__ import annotations

import pytest
from conftest_repo import db_url, populate, postgres_schema_url  # noqa: F401

from supertask.repo.dataid import DataId
from supertask.repo.dataset import DatasetType
from supertask.repo.registry import Registry
from supertask.repo.registry.dataset_manager import _MIN_RANGE, _id_spans

RAW = DatasetType("raw", ("instrument", "visit", "detector"), "NumpyArray")


@pytest.fixture
def registry(db_url):  # noqa: F811
    reg = Registry.create(db_url)
    populate(reg)
    reg.registerDatasetType(RAW)
    yield reg
    reg.close()


def test_records_by_id_are_those_of_the_datasets_whatever_the_spacing_of_the_ids(registry):
    made = []
    for run in range(30):  # 720 datasets
        registry.registerRun(f"r{run}")
        made += registry.insertDatasets(
            RAW,
            f"r{run}",
            [
                {"dataId": DataId(instrument="Cam", visit=v, detector=d), "path": f"p/r{run}/{v}/{d}"}
                | {"size": 100 * v + d, "checksum": f"c{run}"}
                for v in range(1, 7)
                for d in range(1, 5)
            ],
        )
    by_id = {d.id: (f"p/{d.run}/{d.dataId['visit']}/{d.dataId['detector']}", None, None) for d in made}
    sizes = registry.getDatasetRecords(made)
    by_id = {i: (path, sizes[i][1], sizes[i][2]) for i, (path, _, _) in by_id.items()}
    assert sizes == by_id and len(by_id) == 720
    ids = sorted(by_id)
    # a dense run with holes, a scattered tail, an unregistered id, a repeated id
    wanted = ids[:600:2] + ids[600:610] + ids[680:720:20] + [ids[-1] + 10_000, ids[5]]
    ranges, scattered = _id_spans(sorted(set(wanted)))
    assert ranges and scattered  # some are read by a range, some by IN lists
    found = registry.getDatasetRecordsById(wanted)
    assert found == {i: by_id[i] for i in wanted if i in by_id}
    assert registry.getDatasetRecordsById([]) == {}


def test_scattered_ids_are_read_in_full_and_partial_lists_of_one_prepared_statement(registry, monkeypatch):
    """Scattered ids go to the database in lists of `CHUNK` parameters rendered once; the last
    list is filled up with its last id, which must neither add nor lose a record."""
    from supertask.repo.registry import dataset_manager

    monkeypatch.setattr(dataset_manager, "CHUNK", 7)
    registry.registerRun("r")
    made = registry.insertDatasets(
        RAW,
        "r",
        [
            {"dataId": DataId(instrument="Cam", visit=v, detector=d), "path": f"p/{v}/{d}", "size": v * d}
            for v in range(1, 7)
            for d in range(1, 5)
        ],
    )
    ids = sorted(d.id for d in made)
    wanted = ids[::3] + [ids[-1] + 500]  # 8 registered and 1 not: a list of 7 and one of 2, filled up
    assert _id_spans(wanted) == ([], wanted)
    by_id = {
        d.id: (
            f"p/{d.dataId['visit']}/{d.dataId['detector']}",
            d.dataId["visit"] * d.dataId["detector"],
            None,
        )
        for d in made
    }
    assert registry.getDatasetRecordsById(wanted) == {i: by_id[i] for i in ids[::3]}
    assert registry.getDatasetRecordsById(ids[:20:3]) == {i: by_id[i] for i in ids[:20:3]}  # exactly one list


def test_long_dense_runs_are_ranges_and_short_or_sparse_ones_are_listed():
    long_run = list(range(1, 2 * _MIN_RANGE, 2))  # _MIN_RANGE ids, every other one
    assert _id_spans(long_run) == ([(1, 2 * _MIN_RANGE - 1)], [])
    short_run = [1, 2, 3, 5, 8]
    assert _id_spans(short_run + [x + 1000 for x in long_run]) == ([(1001, 2 * _MIN_RANGE + 999)], short_run)
    sparse = list(range(1, 300 * _MIN_RANGE, 60))  # close enough to be one run, too sparse for a range
    assert _id_spans(sparse) == ([], sparse)
    assert _id_spans([]) == ([], [])


def test_isolated_ids_are_not_each_a_range():
    """A million inputs whose ids are spread over the table (one in every few hundred) were
    read by one range statement per id: over a minute of `bps prepare`."""
    ids = list(range(1, 1000 * 200, 200))
    assert _id_spans(ids) == ([], ids)
