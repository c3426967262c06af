"""`bps.fs`: a job's temporary files, scratch directories and their removal, as tempfile and shutil do them."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from bps import fs


def test_a_temporary_file_is_new_private_and_named_with_the_prefix(tmp_path):
    fd, path = fs.new_temporary(tmp_path, "out.json.bps-tmp-")
    os.close(fd)
    assert os.path.isabs(path) and Path(path).parent == tmp_path
    assert Path(path).name.startswith("out.json.bps-tmp-") and len(Path(path).name) > len("out.json.bps-tmp-")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # as tempfile.mkstemp made it
    fd2, other = fs.new_temporary(tmp_path, "out.json.bps-tmp-")
    os.close(fd2)
    assert other != path


def test_a_temporary_file_is_never_made_through_a_symbolic_link(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere"
    (tmp_path / "p-fixed").symlink_to(target)
    names = iter(["fixed", "fresh"])
    monkeypatch.setattr(fs, "_random_name", lambda: next(names))
    fd, path = fs.new_temporary(tmp_path, "p-")
    os.close(fd)
    assert path == str(tmp_path / "p-fresh") and not target.exists()


def test_a_new_directory_is_private_and_absolute_even_under_a_relative_base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    path = fs.new_directory("base", "bps-job~")
    assert os.path.isabs(path) and Path(path).parent == tmp_path / "base"
    assert Path(path).name.startswith("bps-job~") and "~" not in Path(path).name[len("bps-job~") :]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700  # as tempfile.mkdtemp made it


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"TMPDIR": "{tmp}/a"},
        {"TMPDIR": "{tmp}/absent", "TEMP": "{tmp}/b"},  # an unusable one is skipped
        {"TMPDIR": "", "TMP": "{tmp}/a"},  # an empty one is not a candidate
        {"TMPDIR": "{tmp}/file"},  # not a directory
    ],
)
def test_the_default_temporary_directory_is_the_one_tempfile_finds(tmp_path, monkeypatch, env):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "file").write_text("")
    for name in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    monkeypatch.setattr(fs, "_temp_dir", None)
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert fs.default_temp_dir() == tempfile.gettempdir()
    assert os.listdir(tmp_path / "a") == [] and os.listdir(tmp_path / "b") == []  # probes removed


def test_removing_a_tree_removes_everything_in_it_but_follows_no_link(tmp_path):
    outside = tmp_path / "datastore"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "input.json").write_text("{}")
    tree = tmp_path / "scratch"
    (tree / "in" / "deep").mkdir(parents=True)
    (tree / "in" / "deep" / "f").write_text("x")
    (tree / "in" / "input.json").symlink_to(outside / "sub" / "input.json")
    (tree / "linked_dir").symlink_to(outside / "sub")
    (tree / "dangling").symlink_to(tmp_path / "nothing")
    fs.remove_tree(tree)
    assert not tree.exists() and not tree.is_symlink()
    assert (outside / "sub" / "input.json").read_text() == "{}"


def test_removing_a_tree_leaves_a_link_to_a_directory_and_ignores_a_missing_one(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "keep").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    fs.remove_tree(tmp_path / "link")  # shutil.rmtree refuses a link; ignoring errors, it does nothing
    assert (tmp_path / "real" / "keep").exists() and (tmp_path / "link").is_symlink()
    fs.remove_tree(tmp_path / "absent")
