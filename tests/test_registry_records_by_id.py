"""`Registry.getDatasetRecordsById`: registered records of many ids, read by ranges where dense."""

from __future__ import annotations

import pytest
from conftest_repo import db_url, populate, postgres_schema_url  # noqa: F401

from supertask.repo.dataid import DataId
from supertask.repo.dataset import DatasetType
from supertask.repo.registry import Registry
from supertask.repo.registry.dataset_manager import _id_spans

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
    for run in range(20):  # 480 datasets
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
    assert sizes == by_id and len(by_id) == 480
    ids = sorted(by_id)
    # a dense run with holes, a scattered tail, an unregistered id, a repeated id
    wanted = ids[:150:2] + ids[150:160] + ids[200:400:40] + [ids[-1] + 10_000, ids[5]]
    assert any(span[2] for span in _id_spans(sorted(set(wanted))))  # some are read by IN lists
    found = registry.getDatasetRecordsById(wanted)
    assert found == {i: by_id[i] for i in wanted if i in by_id}
    assert registry.getDatasetRecordsById([]) == {}


def test_dense_ids_are_one_range_and_scattered_ones_are_listed():
    assert list(_id_spans([1, 2, 3, 5, 8])) == [(1, 8, None)]
    assert list(_id_spans([1, 1000, 1001])) == [(1, 1, None), (1000, 1001, None)]
    assert list(_id_spans([1, 60, 119])) == [(1, 119, [1, 60, 119])]
    assert list(_id_spans([])) == []
