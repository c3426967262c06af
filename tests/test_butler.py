"""Butler: create/open, get/put, write-once outputs, crash safety, ingest."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import yaml
from conftest_repo import db_url, populate, postgres_schema_url  # noqa: F401

from supertask.repo.butler import Butler, IngestItem
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset, DatasetType
from supertask.repo.datastore import DatastoreError, checksum_file
from supertask.repo.registry import ConflictingDatasetError, IncompatibleSchemaError

CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "NumpyArray")
REFCAT = DatasetType("refcat", (), "StructuredDataDict")
DATA_ID = {"instrument": "Cam", "visit": 1, "detector": 2}


@pytest.fixture
def repo(tmp_path, db_url):  # noqa: F811
    url = None if db_url.startswith("sqlite") else db_url
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the test server's URL carries a password
        butler = Butler.create(tmp_path / "repo", db_url=url)
    populate(butler.registry)
    butler.close()
    return tmp_path / "repo"


def test_create_writes_config_and_refuses_an_existing_repository(repo):
    config = yaml.safe_load((repo / "butler.yaml").read_text())
    assert config["registry"]["schema_version"].startswith("1.")
    with pytest.raises(FileExistsError, match="already holds a repository"):
        Butler.create(repo)


def test_collections_default_to_the_run(repo):
    butler = Butler(repo, run="out")
    assert butler.collections == ["out"]
    assert Butler(repo, collections="a", run="out").collections == ["a"]


def test_put_then_get_round_trips_through_the_search_collections(repo):
    writer = Butler(repo, run="run1")
    ds = writer.put(np.arange(4.0), CALEXP, DATA_ID)
    assert ds.id is not None and ds.run == "run1"
    reader = Butler(repo, collections=["run1"])
    np.testing.assert_array_equal(reader.get(Dataset(CALEXP, DataId(DATA_ID))), np.arange(4.0))
    np.testing.assert_array_equal(reader.get(ds, verify=True), np.arange(4.0))


def test_put_accepts_a_dataset_handle_and_drops_extra_data_id_keys(repo):
    butler = Butler(repo, run="run1")
    ds = butler.put(np.zeros(2), Dataset(CALEXP, DataId(DATA_ID, band="r")))
    assert ds.dataId == DataId(DATA_ID)


def test_outputs_are_write_once(repo):
    butler = Butler(repo, run="run1")
    butler.put(np.zeros(2), CALEXP, DATA_ID)
    with pytest.raises(ConflictingDatasetError, match="write-once"):
        butler.put(np.ones(2), CALEXP, DATA_ID)
    np.testing.assert_array_equal(butler.get(Dataset(CALEXP, DataId(DATA_ID))), np.zeros(2))


def test_crash_before_registration_leaves_nothing_registered_and_a_retry_works(repo, monkeypatch):
    butler = Butler(repo, run="run1")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(butler.registry, "insertDatasetGroups", crash)
    with pytest.raises(KeyboardInterrupt):
        butler.put(np.ones(3), CALEXP, DATA_ID)
    monkeypatch.undo()
    assert not butler.datasetExists(Dataset(CALEXP, DataId(DATA_ID)))
    assert not [p for p in repo.rglob("*.tmp*")], "the temporary file of the failed put is left"
    ds = butler.put(np.full(3, 7.0), CALEXP, DATA_ID)
    path, size, checksum = butler.registry.getDatasetLocation(ds)
    assert checksum_file(repo / path) == checksum
    np.testing.assert_array_equal(butler.get(ds), np.full(3, 7.0))


def test_a_put_that_loses_the_race_never_replaces_the_registered_file(repo, monkeypatch):
    # Another writer registers the dataset between this put's existence check and its
    # registration: the put fails, and the registered file keeps its bytes.
    butler = Butler(repo, run="run1")
    other = Butler(repo, run="run1")
    monkeypatch.setattr(butler.registry, "findDataset", lambda *a, **k: None)
    first = other.put(np.full(3, 1.0), CALEXP, DATA_ID)
    path, _, checksum = other.registry.getDatasetLocation(first)
    with pytest.raises(ConflictingDatasetError):
        butler.put(np.full(3, 2.0), CALEXP, DATA_ID)
    assert checksum_file(repo / path) == checksum
    np.testing.assert_array_equal(other.get(first), np.full(3, 1.0))


def test_get_of_a_missing_dataset_names_the_collections(repo):
    butler = Butler(repo, collections=["run1", "run2"], run="run1")
    butler.registry.registerRun("run2")
    butler.registry.registerDatasetType(CALEXP)
    with pytest.raises(LookupError, match=r"not found in collections \['run1', 'run2'\]"):
        butler.get(Dataset(CALEXP, DataId(DATA_ID)))


def test_global_datasets_can_be_put_and_read(repo):
    butler = Butler(repo, run="refs")
    ds = butler.put({"stars": [1, 2]}, REFCAT, {})
    assert ds.dataId == DataId()
    assert Butler(repo, collections="refs").get(Dataset(REFCAT, DataId())) == {"stars": [1, 2]}


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink", "move"])
def test_ingest_registers_files_in_bulk(repo, tmp_path, mode):
    items = []
    for visit in range(3):
        src = tmp_path / f"raw_{visit}.npy"
        np.save(src, np.full(2, visit))
        items.append(IngestItem(src, CALEXP, {"instrument": "Cam", "visit": visit, "detector": 0}))
    butler = Butler(repo, run="raw")
    datasets = butler.ingest(items, mode=mode)
    assert [d.dataId["visit"] for d in datasets] == [0, 1, 2]
    assert all(src.path.exists() == (mode != "move") for src in items)
    for visit, ds in enumerate(datasets):
        np.testing.assert_array_equal(butler.get(ds, verify=True), np.full(2, visit))


def test_ingest_is_restartable(repo, tmp_path):
    src = tmp_path / "a.npy"
    np.save(src, np.ones(2))
    butler = Butler(repo, run="raw")
    first = butler.ingest([(src, CALEXP, DATA_ID)], mode="copy")
    again = butler.ingest([(src, CALEXP, DATA_ID)], mode="copy")
    assert first[0].id == again[0].id


def test_incompatible_schema_version_in_config_is_a_clear_error(repo):
    path = repo / "butler.yaml"
    config = yaml.safe_load(path.read_text())
    config["registry"]["schema_version"] = "7.0"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(IncompatibleSchemaError, match="schema version 7.0"):
        Butler(repo)


def test_a_password_in_the_registry_url_draws_a_warning(tmp_path):
    from supertask.repo.butler import _has_password

    assert _has_password("postgresql+psycopg://u:secret@host/db")
    assert not _has_password("postgresql+psycopg://u@host/db")
    with pytest.warns(UserWarning, match="pgpass"):
        with pytest.raises(Exception):  # noqa: B017 - nothing listens there; only the warning matters
            Butler.create(tmp_path / "r", db_url="postgresql+psycopg://u:secret@127.0.0.1:1/db")


def _corrupt(butler, ds, how: str) -> None:
    path = butler.datastore.root / butler.registry.getDatasetLocation(ds)[0]
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    else:  # same size, different bytes: only the checksum can tell
        data[-8:] = bytes(b ^ 0xFF for b in data[-8:])
    path.write_bytes(bytes(data))


def test_get_of_a_truncated_file_names_the_dataset_and_the_fix_instead_of_a_reader_error(repo):
    butler = Butler(repo, run="run1")
    ds = butler.put(np.arange(1000.0), CALEXP, DATA_ID)
    _corrupt(butler, ds, "truncated")
    with pytest.raises(DatastoreError, match=r"calexp .*'visit': 1.* in run 'run1': .*has size .*restore it"):
        butler.get(ds)


def test_get_with_verify_finds_same_size_corruption_by_checksum(repo):
    butler = Butler(repo, run="run1")
    ds = butler.put(np.arange(1000.0), CALEXP, DATA_ID)
    _corrupt(butler, ds, "flipped")
    with pytest.raises(DatastoreError, match="does not match its registered checksum"):
        butler.get(ds, verify=True)
