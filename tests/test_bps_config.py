"""Submit configuration: layering, provenance, and errors that say what to fix."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from bps.config import SHIPPED_SITE_DIR, ConfigError, load_config, parse_cli_override

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def site_dir(tmp_path, monkeypatch):
    sites = tmp_path / "sites"
    sites.mkdir()
    write(
        sites / "tiny.yaml",
        {"site": {"name": "tiny", "max_memory_mb": 4096, "max_cpus": 4}, "retry": {"retries": 7}},
    )
    monkeypatch.setenv("BPS_SITE_CONFIG_PATH", str(sites))
    return sites


def base(**extra) -> dict:
    return {"pipeline": "p.yaml", "repo": "repo", "output_run": "u/me/run", "compute_site": "tiny", **extra}


def test_layers_override_in_order_and_record_their_source(tmp_path, site_dir):
    user = write(tmp_path / "submit.yaml", base(resources={"labels": {"isr": {"memory_mb": 3000}}}))
    resolved = load_config(user, {"local.jobs": 5}, now=NOW)
    c = resolved.config
    assert c.retry.retries == 7 and resolved.source_of("retry.retries") == str(site_dir / "tiny.yaml")
    assert c.local.jobs == 5 and resolved.source_of("local.jobs") == "command line"
    assert (
        c.retry.memory_multiplier == 2.0
        and resolved.source_of("retry.memory_multiplier") == "package defaults"
    )
    assert resolved.source_of("resources.labels.isr.memory_mb") == str(user)
    assert resolved.resources_for("isr").memory_mb == 3000
    assert resolved.resources_for("other").memory_mb == 2048
    assert resolved.site.name == "tiny" and resolved.site.max_cpus == 4


def test_user_file_overrides_site_and_cli_overrides_user(tmp_path, site_dir):
    user = write(tmp_path / "submit.yaml", base(retry={"retries": 1}))
    assert load_config(user, now=NOW).config.retry.retries == 1
    assert load_config(user, {"retry.retries": 0}, now=NOW).config.retry.retries == 0


def test_relative_paths_are_relative_to_the_file_that_set_them(tmp_path, site_dir):
    sub = tmp_path / "cfg"
    sub.mkdir()
    user = write(sub / "submit.yaml", base())
    c = load_config(user, now=NOW).config
    assert c.pipeline == str(sub / "p.yaml") and c.repo == str(sub / "repo")


def test_submit_dir_placeholders_are_expanded(tmp_path, site_dir):
    user = write(tmp_path / "submit.yaml", base(submit_dir="out/{output_run}/{timestamp}"))
    assert load_config(user, now=NOW).config.submit_dir == str(tmp_path / "out/u_me_run/20260102T030405Z")


def test_show_config_lists_every_value_with_its_source(tmp_path, site_dir):
    user = write(tmp_path / "submit.yaml", base())
    text = load_config(user, {"wms": "htcondor"}, now=NOW).show()
    assert "wms: htcondor  # command line" in text
    assert f"output_run: u/me/run  # {user}" in text
    assert "final.batch_size: 5000  # package defaults" in text


def test_unknown_key_suggests_the_closest_known_key(tmp_path, site_dir):
    user = write(tmp_path / "submit.yaml", base(retry={"retires": 5}))
    with pytest.raises(ConfigError) as err:
        load_config(user, now=NOW)
    assert "retry.retires" in str(err.value) and "did you mean 'retry.retries'" in str(err.value)
    assert str(user) in str(err.value)


def test_wrong_type_names_key_file_and_expected_type(tmp_path, site_dir):
    user = write(tmp_path / "submit.yaml", base(local={"jobs": "many"}))
    with pytest.raises(ConfigError) as err:
        load_config(user, now=NOW)
    message = str(err.value)
    assert "local.jobs" in message and str(user) in message and "int" in message


def test_unknown_site_lists_known_sites(tmp_path, site_dir):
    user = write(tmp_path / "submit.yaml", base(compute_site="tiyn"))
    with pytest.raises(ConfigError, match="Did you mean .tiny."):
        load_config(user, now=NOW)


def test_resources_beyond_the_site_are_refused(tmp_path, site_dir):
    user = write(tmp_path / "submit.yaml", base(resources={"labels": {"big": {"memory_mb": 8000}}}))
    with pytest.raises(ConfigError, match=r"resources.labels.big.memory_mb = 8000.*max_memory_mb = 4096"):
        load_config(user, now=NOW)
    user = write(tmp_path / "submit.yaml", base(final={"cpus": 16}))
    with pytest.raises(ConfigError, match=r"final.cpus = 16"):
        load_config(user, now=NOW)


def test_missing_required_keys_are_named(tmp_path, site_dir):
    user = write(tmp_path / "submit.yaml", {"compute_site": "tiny"})
    with pytest.raises(ConfigError) as err:
        load_config(user, now=NOW)
    assert "qgraph" in str(err.value) and "repo is not set" in str(err.value)


def test_shipped_local_site_config_is_valid(tmp_path, monkeypatch):
    monkeypatch.delenv("BPS_SITE_CONFIG_PATH", raising=False)
    user = write(tmp_path / "submit.yaml", {"qgraph": "g.qgraph", "repo": "r", "compute_site": "local"})
    resolved = load_config(user, now=NOW)
    assert resolved.site.wms == "local" and resolved.site.staging == "shared"


def test_cli_override_parses_yaml_values():
    assert parse_cli_override("retry.retries=5") == ("retry.retries", 5)
    assert parse_cli_override("input_collections=[a, b]") == ("input_collections", ["a", "b"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_cli_override("retries")


def test_site_name_shorthand_selects_the_compute_site(tmp_path, site_dir):
    data = base()
    del data["compute_site"]
    user = write(tmp_path / "submit.yaml", {**data, "site": "tiny"})
    resolved = load_config(user, now=NOW)
    assert resolved.config.compute_site == "tiny" and resolved.site.max_memory_mb == 4096


@pytest.mark.parametrize("site_file", sorted(SHIPPED_SITE_DIR.glob("*.yaml")))
def test_every_shipped_site_config_loads(site_file, tmp_path, monkeypatch):
    monkeypatch.delenv("BPS_SITE_CONFIG_PATH", raising=False)
    resolved = load_config(None, {"compute_site": site_file.stem, "qgraph": "g.qgraph", "repo": "r"}, now=NOW)
    assert resolved.site.name == site_file.stem


@pytest.mark.parametrize("example", sorted((Path(__file__).parents[1] / "examples").glob("bps_*.yaml")))
def test_example_submit_files_are_valid(example, monkeypatch):
    monkeypatch.delenv("BPS_SITE_CONFIG_PATH", raising=False)
    resolved = load_config(example, now=NOW)
    assert resolved.config.repo and resolved.config.output_run
