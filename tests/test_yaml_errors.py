"""Malformed YAML is located the same way in a pipeline file, a config override file and a unit-records file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from supertask.config import Config, Field
from supertask.config.errors import ConfigOverrideError
from supertask.config.overrides import apply_yaml_text
from supertask.pipeline import Pipeline, PipelineError
from supertask.repo.unit_records import UnitRecordsError, read_unit_records
from supertask.repo.units import Universe
from supertask.yaml_errors import yaml_error_parts

BROKEN = "a: 1\nb: [2, 3\nc: 4\n"


def _parts(text: str) -> tuple[str, str]:
    with pytest.raises(yaml.YAMLError) as caught:
        yaml.safe_load(text)
    return yaml_error_parts(caught.value)


def test_a_parse_error_gives_its_one_based_line_and_the_parsers_problem():
    line, problem = _parts(BROKEN)
    assert line == ", line 3" and problem.startswith("expected ',' or ']'")


def test_an_error_without_position_or_problem_is_described_by_its_text():
    assert yaml_error_parts(yaml.YAMLError("no document")) == ("", "no document")


class _Config(Config):
    a = Field(doc="a", dtype=int, default=0)


def test_pipeline_overrides_and_unit_records_say_the_same_place(tmp_path: Path):
    where = "{}, line 3: malformed {}YAML: expected ',' or ']'"
    with pytest.raises(PipelineError) as pipeline_error:
        Pipeline.fromYaml(BROKEN, source="p.yaml")
    with pytest.raises(ConfigOverrideError) as override_error:
        apply_yaml_text(_Config(), BROKEN, source="o.yaml")
    records = tmp_path / "r.yaml"
    records.write_text(BROKEN)
    with pytest.raises(UnitRecordsError) as records_error:
        read_unit_records(records, Universe.default())
    assert str(pipeline_error.value).startswith(where.format("p.yaml", "pipeline "))
    assert where.format("o.yaml", "") in str(override_error.value)
    assert str(records_error.value).startswith(where.format(records, ""))
