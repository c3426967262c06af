"""``bps submit SUBMIT_DIR`` and the restart overrides of the command line."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from test_local_wms import registered, toy  # noqa: F401 - the fixture is used by name

from bps.cli import _restart_overrides
from bps.cli import main as bps_main


def test_a_prepared_directory_can_be_submitted_later(toy):  # noqa: F811
    repo, config = toy
    cfg = config("later")
    prepared = CliRunner().invoke(bps_main, ["prepare", str(cfg)])
    assert prepared.exit_code == 0, prepared.output
    assert registered(repo, "made") == {}
    submit_dir = Path(yaml.safe_load(cfg.read_text())["submit_dir"])
    result = CliRunner().invoke(bps_main, ["submit", str(submit_dir), "-j", "2"])
    assert result.exit_code == 0, result.output
    assert sorted(registered(repo, "made")) == [1, 2, 3, 4]  # every detector of the toy repository


def test_submitting_a_directory_that_was_never_prepared_says_what_to_give(tmp_path):
    result = CliRunner().invoke(bps_main, ["submit", str(tmp_path)])
    assert result.exit_code == 1
    assert "not a prepared submit directory" in result.output and "bps prepare" in result.output


def test_restart_overrides_combine_global_and_per_label_changes():
    overrides = _restart_overrides(
        {"memory_mb": 4096, "retries": None, "cpus": None}, ("coadd:memory_max_mb=65536", "coadd:cpus=2")
    )
    assert overrides == {"memory_mb": 4096, "labels": {"coadd": {"memory_max_mb": 65536, "cpus": 2}}}
    assert _restart_overrides({"memory_mb": None}, ()) is None


@pytest.mark.parametrize("bad", ["coadd", "coadd:memory_mb", ":memory_mb=1", "coadd:memory_mb=lots"])
def test_a_malformed_label_override_is_refused(bad):
    with pytest.raises(click.BadParameter, match="LABEL:KEY=VALUE|not a number"):
        _restart_overrides({}, (bad,))
