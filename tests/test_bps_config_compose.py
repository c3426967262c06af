"""Submit files that compose: ``include:`` layers and ``${VAR}`` expanded at prepare time.

Each value keeps the file that set it; only the environment variables a file names are
read and recorded (with their values), in ``submit_config.yaml`` and ``provenance.json``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support.toy_pipeline import ToyPipeline, submit_dir_of

from bps.cli import main as bps_main
from bps.config import ConfigError, load_config

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def site_dir(tmp_path, monkeypatch):
    sites = tmp_path / "sites"
    write(sites / "tiny.yaml", {"site": {"name": "tiny", "max_memory_mb": 4096}, "retry": {"retries": 7}})
    monkeypatch.setenv("BPS_SITE_CONFIG_PATH", str(sites))
    return sites


def test_included_files_are_layers_below_the_including_file_in_order(tmp_path, site_dir):
    common = write(
        tmp_path / "common" / "drp.yaml",
        {"pipeline": "pipelines/DRP.yaml", "repo": "repo", "compute_site": "tiny", "retry": {"retries": 4}},
    )
    paths = write(
        tmp_path / "common" / "paths.yaml", {"repo": "/project/repo", "retry": {"memory_max_mb": 4000}}
    )
    tile = write(
        tmp_path / "tiles" / "t1.yaml",
        {
            "include": ["../common/drp.yaml", "../common/paths.yaml"],
            "output_run": "u/t1",
            "retry": {"retries": 5},
        },
    )
    resolved = load_config(tile, now=NOW)
    c = resolved.config
    # paths.yaml (listed later) wins over drp.yaml; the tile file over both; the site below all
    assert c.repo == "/project/repo" and c.retry.retries == 5 and c.retry.memory_max_mb == 4000
    assert c.output_run == "u/t1" and c.site.name == "tiny"  # compute_site came from an include
    # relative paths are relative to the file that set them
    assert c.pipeline == str(tmp_path / "common" / "pipelines" / "DRP.yaml")
    assert resolved.source_of("pipeline") == f"{common} (included by {tile})"
    assert resolved.source_of("repo") == f"{paths} (included by {tile})"
    assert resolved.source_of("retry.retries") == str(tile)
    assert resolved.source_of("retry.memory_max_mb") == f"{paths} (included by {tile})"
    assert f"# {common} (included by {tile})" in resolved.show()


def test_includes_nest_and_a_cycle_or_a_missing_file_is_refused(tmp_path, site_dir):
    write(tmp_path / "a.yaml", {"include": "b.yaml", "repo": "r", "pipeline": "p", "compute_site": "tiny"})
    write(tmp_path / "b.yaml", {"include": ["c.yaml"], "output_run": "u/b"})
    write(tmp_path / "c.yaml", {"retry": {"retries": 1}})
    top = write(tmp_path / "top.yaml", {"include": "a.yaml"})
    resolved = load_config(top, now=NOW)
    assert (resolved.config.output_run, resolved.config.retry.retries) == ("u/b", 1)
    assert resolved.source_of("retry.retries") == f"{tmp_path / 'c.yaml'} (included by {tmp_path / 'b.yaml'})"

    write(tmp_path / "c.yaml", {"include": "a.yaml"})
    with pytest.raises(ConfigError) as err:
        load_config(top, now=NOW)
    assert str(err.value) == (
        f"include cycle: {tmp_path / 'a.yaml'} -> {tmp_path / 'b.yaml'} -> {tmp_path / 'c.yaml'} -> "
        f"{tmp_path / 'a.yaml'}; a file must not include itself"
    )
    write(tmp_path / "c.yaml", {"include": "nowhere.yaml"})
    with pytest.raises(ConfigError, match=r"include 'nowhere.yaml' in .*c.yaml: no file .*nowhere.yaml"):
        load_config(top, now=NOW)
    write(tmp_path / "c.yaml", {"include": {"file": "x"}})
    with pytest.raises(
        ConfigError, match=r"include in .*c.yaml: expected a file name or a list of file names"
    ):
        load_config(top, now=NOW)


def test_variables_are_expanded_and_only_those_named_are_kept(tmp_path, site_dir, monkeypatch):
    monkeypatch.setenv("PROJECT_ROOT", "/project")
    monkeypatch.setenv("TILE", "9813")
    monkeypatch.setenv("UNRELATED_SECRET", "s3cret")
    user = write(
        tmp_path / "t.yaml",
        {
            "pipeline": "${PROJECT_ROOT}/DRP.yaml",
            "repo": "${PROJECT_ROOT}/repo",
            "output_run": "drp/tract-${TILE}",
            "where": "tract = ${TILE} AND note = '$${LITERAL}'",
            "compute_site": "tiny",
            "site": {"environment": {"DATA": "${PROJECT_ROOT}/data"}},
        },
    )
    resolved = load_config(user, now=NOW)
    c = resolved.config
    assert (c.pipeline, c.repo, c.output_run) == ("/project/DRP.yaml", "/project/repo", "drp/tract-9813")
    assert c.where == "tract = 9813 AND note = '${LITERAL}'"
    assert c.site.environment == {"DATA": "/project/data"}  # the job gets the value, not the variable
    assert resolved.variables == {"PROJECT_ROOT": ("/project", [str(user)]), "TILE": ("9813", [str(user)])}
    shown = resolved.show()
    assert f"#   PROJECT_ROOT=/project  (named in {user})" in shown and "UNRELATED_SECRET" not in shown


def test_an_unset_or_malformed_variable_is_refused_naming_key_and_file(tmp_path, site_dir, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    user = write(
        tmp_path / "t.yaml", {"repo": "${NOT_SET_ANYWHERE}/repo", "pipeline": "p", "compute_site": "tiny"}
    )
    with pytest.raises(ConfigError) as err:
        load_config(user, now=NOW)
    assert str(err.value) == (
        f"repo in {user}: environment variable NOT_SET_ANYWHERE (written ${{NOT_SET_ANYWHERE}}) is not set; "
        "set it before bps prepare, or write the value"
    )
    write(user, {"repo": "r", "pipeline": "p", "compute_site": "tiny", "input_collections": ["${bad name}"]})
    with pytest.raises(
        ConfigError, match=r"input_collections\[0\] in .*: \$\{bad name\} is not an environment"
    ):
        load_config(user, now=NOW)


def test_the_site_file_may_name_variables_too(tmp_path, site_dir, monkeypatch):
    monkeypatch.setenv("SCRATCH", "/scratch/me")
    write(site_dir / "tiny.yaml", {"site": {"name": "tiny", "scratch_dir": "${SCRATCH}/jobs"}})
    user = write(
        tmp_path / "t.yaml", {"repo": "r", "pipeline": "p", "output_run": "u/x", "compute_site": "tiny"}
    )
    resolved = load_config(user, now=NOW)
    assert resolved.config.site.scratch_dir == "/scratch/me/jobs"
    assert resolved.variables == {"SCRATCH": ("/scratch/me", [str(site_dir / "tiny.yaml")])}


def test_prepare_records_the_variables_used_in_the_submit_directory(tmp_path, monkeypatch):
    toy = ToyPipeline(run="u/test/vars", detectors=(1,), seed_scale=10, multiplier=2).set_up(
        tmp_path, monkeypatch, compute_site="local"
    )
    cfg = toy.submit_yaml("vars")
    data = yaml.safe_load(cfg.read_text())
    monkeypatch.setenv("TOY_ROOT", str(tmp_path))
    monkeypatch.setenv("OTHER_TOKEN", "never-recorded")
    write(tmp_path / "paths.yaml", {"repo": data.pop("repo").replace(str(tmp_path), "${TOY_ROOT}")})
    data["include"] = "paths.yaml"
    cfg.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(bps_main, ["prepare", str(cfg)])
    assert result.exit_code == 0, result.output
    submit = submit_dir_of(cfg)
    shown = (submit / "submit_config.yaml").read_text()
    assert f"repo: {tmp_path}/repo  # {tmp_path / 'paths.yaml'} (included by {cfg})" in shown
    assert f"#   TOY_ROOT={tmp_path}  (named in {tmp_path / 'paths.yaml'})" in shown
    recorded = json.loads((submit / "provenance.json").read_text())["variables"]
    assert recorded == {"TOY_ROOT": {"value": str(tmp_path), "named_in": [str(tmp_path / "paths.yaml")]}}
    everything = "".join(
        p.read_text(errors="replace") for p in submit.rglob("*") if p.is_file() and p.suffix != ".qgraph"
    )
    assert "never-recorded" not in everything and os.environ["OTHER_TOKEN"] == "never-recorded"
