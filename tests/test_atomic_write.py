"""`supertask.atomic_write`: the one way files are replaced whole."""

from __future__ import annotations

import os
import stat

import pytest

from supertask.atomic_write import TMP_MARK, atomic_open, atomic_write_bytes, atomic_write_text


def test_the_new_content_replaces_the_old_and_no_temporary_stays(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("old")
    atomic_write_text(path, "new ✓")
    assert path.read_text(encoding="utf-8") == "new ✓"
    atomic_write_bytes(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_a_failure_while_writing_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "graph.qgraph"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_open(path, "wb") as stream:
            stream.write(b"half of the new")
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.qgraph"]


def test_the_temporary_is_a_marked_sibling_until_the_rename(tmp_path):
    path = tmp_path / "manifest.json"
    with atomic_open(path, "w", mark=".job-tmp-") as stream:
        stream.write("{}")
        (sibling,) = tmp_path.iterdir()
        assert sibling.name.startswith("manifest.json.job-tmp-") and not path.exists()
    assert path.read_text() == "{}" and TMP_MARK == ".tmp-"


def test_written_files_get_the_permissions_of_a_plain_open(tmp_path):
    # batch jobs run as another user: they must be able to read what the submitter wrote
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "workflow.json", "{}")
        (tmp_path / "plain").write_text("{}")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "workflow.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o644


@pytest.mark.parametrize("fsync,expected_calls", [(True, 1), (False, 0)])
def test_content_is_synced_before_the_rename_unless_asked_not_to(
    tmp_path, monkeypatch, fsync, expected_calls
):
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    atomic_write_text(tmp_path / "f", "x", fsync=fsync)
    assert len(calls) == expected_calls


def test_only_writing_modes_are_accepted(tmp_path):
    with pytest.raises(ValueError, match="mode must start with 'w'"):
        with atomic_open(tmp_path / "f", "a"):
            pass
