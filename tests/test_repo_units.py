"""The unit universe loaded from YAML, data-ID checks, and Unit values."""

from __future__ import annotations

import copy

import pytest
import yaml

from supertask.repo.dataid import DataId
from supertask.repo.units import Unit, Universe, UniverseError, sort_data_ids


@pytest.fixture(scope="module")
def raw_universe() -> dict:
    from importlib import resources

    return yaml.safe_load(resources.files("supertask.repo").joinpath("universe.yaml").read_text())


def test_packaged_universe_has_the_campaign_units():
    u = Universe.default()
    assert {
        "instrument",
        "physical_filter",
        "band",
        "detector",
        "exposure",
        "visit",
        "skymap",
        "tract",
        "patch",
    } <= set(u.units)
    assert u.requiredKeys("patch") == ("skymap", "tract", "patch")
    assert u.expand(["visit", "detector"]) == ("detector", "instrument", "visit")
    assert u.units["visit"].implies == ("physical_filter",)
    assert u.elementKeys("visit_detector_patch_overlap") == (
        "detector",
        "instrument",
        "patch",
        "skymap",
        "tract",
        "visit",
    )


def test_unknown_reference_is_named(raw_universe):
    data = copy.deepcopy(raw_universe)
    data["units"]["visit"]["requires"] = ["camera"]
    with pytest.raises(UniverseError, match="unit 'visit' refers to unknown unit 'camera'"):
        Universe(data)


def test_requirement_cycles_are_refused(raw_universe):
    data = copy.deepcopy(raw_universe)
    data["units"]["instrument"]["requires"] = ["detector"]
    with pytest.raises(UniverseError, match="requires itself"):
        Universe(data)


def test_unknown_field_type_lists_valid_types(raw_universe):
    data = copy.deepcopy(raw_universe)
    data["units"]["visit"]["fields"]["airmass"] = "double"
    with pytest.raises(
        UniverseError, match=r"unknown type 'double'; use one of \['bool', 'float', 'int', 'str'\]"
    ):
        Universe(data)


def test_spatial_overlap_sides_need_boxes(raw_universe):
    data = copy.deepcopy(raw_universe)
    data["spatial_overlaps"][0]["right"] = "tract"
    del data["units"]["tract"]["fields"]["ra_min"]
    with pytest.raises(UniverseError, match="needs the fields"):
        Universe(data)


def test_check_data_id_converts_and_restricts(raw_universe):
    u = Universe(raw_universe)
    assert u.checkDataId(["visit"], {"instrument": "Cam", "visit": "12", "band": "r"}) == DataId(
        instrument="Cam", visit=12
    )
    with pytest.raises(ValueError, match=r"lacks 'instrument'; units \['visit'\] need keys"):
        u.checkDataId(["visit"], {"visit": 12})
    with pytest.raises(ValueError, match="must be an int"):
        u.checkDataId(["visit"], {"instrument": "Cam", "visit": "twelve"})
    with pytest.raises(ValueError, match="must be a str"):
        u.checkDataId(["band"], {"band": 3})


def test_converter_agrees_with_check(raw_universe):
    u = Universe(raw_universe)
    convert = u.dataIdConverter(["patch"])
    given = {"skymap": "s", "tract": 1, "patch": "4"}
    assert convert(given) == u.checkDataId(["patch"], given) == DataId(skymap="s", tract=1, patch=4)
    with pytest.raises(ValueError, match="lacks 'tract'"):
        convert({"skymap": "s", "patch": 1})


def test_sort_data_ids_matches_sort_key_order():
    ids = [DataId(visit=v, instrument=i) for v in (10, 2, 33) for i in ("B", "A")]
    assert sort_data_ids(ids) == sorted(ids, key=DataId.sort_key)
    mixed = [DataId(a=1), DataId(a="x"), DataId(b=0)]
    assert sort_data_ids(mixed) == sorted(mixed, key=DataId.sort_key)


def test_units_compare_by_type_and_data_id():
    a = Unit("visit", DataId(instrument="Cam", visit=1), {"seeing": 0.7})
    b = Unit("visit", DataId(instrument="Cam", visit=1))
    c = Unit("exposure", DataId(instrument="Cam", exposure=1))
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert a.related == {}  # not in a graph
