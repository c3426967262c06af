"""Datastore: templates, atomic writes, checksums, formatters; usable with no registry."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from supertask.repo.dataset import DatasetType
from supertask.repo.datastore import Datastore, DatastoreError, checksum_file
from supertask.repo.formatters import FormatterError, get_formatter, storage_classes
from supertask.repo.repo_config import RepoConfigError, write_repo_config

CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "ArrayDict")
DATA_ID = {"instrument": "Cam", "visit": 12, "detector": 3}


def test_path_is_deterministic_and_names_run_type_and_data_id(tmp_path):
    store = Datastore(tmp_path)
    path = store.path(CALEXP, DATA_ID, "u/me/run1")
    assert path == "u/me/run1/calexp/calexp_detector-3_instrument-Cam_visit-12.npz"
    assert (
        Datastore(tmp_path / "elsewhere").path(CALEXP, dict(reversed(DATA_ID.items())), "u/me/run1") == path
    )


def test_templates_per_dataset_type_are_used_and_checked(tmp_path):
    store = Datastore(tmp_path, {"templates": {"calexp": "{run}/{datasetType}/{visit}/{detector}"}})
    assert store.path(CALEXP, DATA_ID, "r") == "r/calexp/12/3.npz"
    with pytest.raises(DatastoreError, match="needs 'visit'"):
        store.path(CALEXP, {"instrument": "Cam", "detector": 1}, "r")
    with pytest.raises(DatastoreError, match="lacks '\\{run\\}'"):
        Datastore(tmp_path, {"templates": {"calexp": "{datasetType}/{visit}"}})


def test_unsafe_characters_in_values_do_not_escape_the_directory(tmp_path):
    dt = DatasetType("x", ("instrument",), "StructuredDataDict")
    path = Datastore(tmp_path).path(dt, {"instrument": "../../etc"}, "r")
    assert ".." not in path.split("/")


def test_write_is_atomic_and_records_size_and_checksum(tmp_path):
    store = Datastore(tmp_path)
    obj = {
        "image": np.arange(12.0).reshape(3, 4),
        "mask": np.zeros((3, 4), np.int32),
        "metadata": {"seeing": 0.7},
    }
    path, size, checksum = store.write(obj, CALEXP, DATA_ID, "r")
    full = tmp_path / path
    assert full.stat().st_size == size
    assert checksum_file(full) == checksum
    back = store.read(path, "ArrayDict")
    assert back["metadata"] == {"seeing": 0.7}
    np.testing.assert_array_equal(back["image"], obj["image"])
    assert [p.name for p in full.parent.iterdir()] == [full.name]  # no temporary left behind


def test_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    store = Datastore(tmp_path)
    with pytest.raises(FormatterError, match="numpy array"):
        store.write({"image": [1, 2, 3]}, CALEXP, DATA_ID, "r")
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


def test_failed_rewrite_keeps_the_previous_complete_file(tmp_path):
    store = Datastore(tmp_path)
    path, _, checksum = store.write({"image": np.ones(3)}, CALEXP, DATA_ID, "r")
    with pytest.raises(FormatterError):
        store.write({"image": "not an array"}, CALEXP, DATA_ID, "r")
    assert checksum_file(tmp_path / path) == checksum


@pytest.mark.parametrize(
    ("storageClass", "obj"),
    [
        ("NumpyArray", np.arange(6, dtype=np.int16).reshape(2, 3)),
        ("Table", np.array([(1, 2.5), (2, 3.5)], dtype=[("id", "i8"), ("flux", "f8")])),
        ("StructuredDataDict", {"a": 1, "b": [1, 2], "c": {"d": "e"}}),
        ("StructuredDataDictYaml", {"a": 1, "b": [1, 2]}),
    ],
)
def test_formatters_round_trip(tmp_path, storageClass, obj):
    fmt = get_formatter(storageClass)
    path = tmp_path / f"x{fmt.extension}"
    fmt.write(obj, path)
    back = fmt.read(path)
    if isinstance(obj, np.ndarray):
        np.testing.assert_array_equal(back, obj)
        assert back.dtype == obj.dtype
    else:
        assert back == obj


def test_json_formatter_converts_numpy_values(tmp_path):
    fmt = get_formatter("StructuredDataDict")
    fmt.write({"n": np.int64(3), "arr": np.array([1.5, 2.5])}, tmp_path / "m.json")
    assert fmt.read(tmp_path / "m.json") == {"n": 3, "arr": [1.5, 2.5]}


def test_wrong_object_for_storage_class_names_what_is_expected(tmp_path):
    with pytest.raises(FormatterError, match="structured array"):
        get_formatter("Table").write(np.ones(3), tmp_path / "t.npy")
    with pytest.raises(KeyError, match="unknown storage class 'Image'.*NumpyArray"):
        get_formatter("Image")
    assert {"NumpyArray", "ArrayDict", "Table", "StructuredDataDict"} <= set(storage_classes())


def test_transfer_modes_bring_files_in(tmp_path):
    store = Datastore(tmp_path / "repo")
    src = tmp_path / "in.json"
    src.write_text('{"a": 1}')
    for mode in ("copy", "hardlink", "symlink"):
        size, checksum = store.transfer(src, f"r/{mode}.json", mode)
        assert (tmp_path / "repo" / "r" / f"{mode}.json").read_text() == '{"a": 1}'
        assert (size, checksum) == (src.stat().st_size, checksum_file(src))
    assert (tmp_path / "repo/r/symlink.json").is_symlink()
    store.transfer(src, "r/moved.json", "move")
    assert not src.exists()
    with pytest.raises(ValueError, match="unknown ingest mode"):
        store.transfer(tmp_path / "repo/r/copy.json", "r/x.json", "teleport")


def test_from_repo_reads_only_the_repo_config(tmp_path):
    with pytest.raises(RepoConfigError, match="supertask repo create"):
        Datastore.fromRepo(tmp_path)
    write_repo_config(tmp_path, {"registry": {}, "datastore": {"templates": {"calexp": "{run}/c/{visit}"}}})
    assert Datastore.fromRepo(tmp_path).path(CALEXP, DATA_ID, "r") == "r/c/12.npz"


def test_datastore_import_does_not_load_sqlalchemy():
    code = (
        "import sys, supertask.repo.datastore, supertask.repo.formatters;print('sqlalchemy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_parquet_without_pyarrow_says_how_to_get_it(tmp_path):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(FormatterError, match="pip install pyarrow"):
            get_formatter("ParquetTable").write(object(), tmp_path / "t.parquet")
    else:
        import pyarrow as pa

        fmt = get_formatter("ParquetTable")
        fmt.write(pa.table({"a": [1, 2]}), tmp_path / "t.parquet")
        assert fmt.read(tmp_path / "t.parquet").column("a").to_pylist() == [1, 2]


def test_write_fsyncs_by_default_and_not_when_the_caller_syncs(tmp_path, monkeypatch):
    import os

    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real(fd))
    store = Datastore(tmp_path)
    dt = DatasetType("calexp", ("detector",), "NumpyArray")
    default = store.write(np.arange(3), dt, {"detector": 1}, "run")
    assert len(calls) == 1
    unsynced = store.write(np.arange(3), dt, {"detector": 2}, "run", fsync=False)
    assert len(calls) == 1
    assert unsynced[1:] == default[1:]  # same bytes, size and checksum
    np.testing.assert_array_equal(store.read(unsynced[0], "NumpyArray"), np.arange(3))
    assert not list(tmp_path.rglob("*.tmp*"))
    store.sync()  # flushes the filesystem of the root; must not fail on a fresh directory
