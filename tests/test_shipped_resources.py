"""Data the packages read (sites, templates, schemas, the universe) is package data, found through the package.

A file read at run time but not declared as package data would be missing from a wheel
while every test run from the checkout still passed; these tests tie the two together.
The install itself is exercised by ``tests/test_installed_package.py``.
"""

from __future__ import annotations

import fnmatch
import sys
import tomllib
from pathlib import Path

import pytest

import bps
import supertask
from bps.config import DEFAULTS_FILE, SHIPPED_SITE_DIR, find_site_file
from bps.wms.htcondor.templates import DEFAULT_DIR, NAMES, template_path
from bps.wms.pegasus import schema

ROOT = Path(__file__).resolve().parents[1]


def _package_data() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]


@pytest.mark.parametrize(
    "package,directory",
    [
        (bps, SHIPPED_SITE_DIR),
        (bps, DEFAULT_DIR),
        (bps, schema.SHIPPED_DIR),
        (supertask, Path(supertask.__file__).parent / "repo"),
    ],
)
def test_every_data_file_read_at_run_time_is_declared_package_data(package, directory):
    root = Path(package.__file__).parent
    assert directory.is_relative_to(root), f"{directory} is outside the package {root}"
    globs = _package_data()[package.__name__]
    files = [p for p in directory.iterdir() if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert files
    undeclared = [
        str(p.relative_to(root))
        for p in files
        if not any(fnmatch.fnmatch(str(p.relative_to(root)), g) for g in globs)
    ]
    assert undeclared == []


def test_shipped_sites_templates_and_schemas_are_found_inside_the_package():
    root = Path(bps.__file__).parent
    assert find_site_file("htcondor_shared").is_relative_to(root)
    assert DEFAULTS_FILE.is_relative_to(root) and DEFAULTS_FILE.is_file()
    assert all(template_path(name).is_relative_to(root) for name in NAMES)
    assert schema.schema_dir() == schema.SHIPPED_DIR and (schema.SHIPPED_DIR / "LICENSE").is_file()


def test_a_site_file_in_the_working_directory_replaces_the_shipped_one(tmp_path, monkeypatch):
    (tmp_path / "site_configs").mkdir()
    (tmp_path / "site_configs" / "local.yaml").write_text("site: {max_memory_mb: 1024}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BPS_SITE_CONFIG_PATH", raising=False)
    assert find_site_file("local") == (tmp_path / "site_configs" / "local.yaml").resolve()


def test_validating_pegasus_files_without_jsonschema_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'supertask\[validate\]'"):
        schema.validator("wf-5.0.yml")
