"""``supertask define-visits``: ingested exposures grouped into visits with their sky regions.

A small repository: instrument ``Cam`` (2 detectors), exposures with raws in ``Cam/raw/all``;
`BoxFromDataId` plays an instrument's region reader (a box from the data ID, no file format).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from supertask.cli.main import main
from supertask.repo.butler import Butler
from supertask.repo.dataid import DataId
from supertask.repo.dataset import DatasetType
from supertask.repo.visits import RegionReader, group_exposures, union_box

RAW = DatasetType("raw", ("instrument", "exposure", "detector"), "ArrayDict")
READER = f"{__name__}:BoxFromDataId"


class BoxFromDataId(RegionReader):
    """Exposure e, detector d: RA [e + d/10, e + d/10 + 0.05], Dec [-1, 1]."""

    def read(self, path: Path, dataId: Mapping[str, Any]) -> tuple[float, float, float, float]:
        assert path.exists()
        ra = dataId["exposure"] + dataId["detector"] / 10
        return (ra, ra + 0.05, -1.0, 1.0)


class Broken(RegionReader):
    def read(self, path: Path, dataId: Mapping[str, Any]) -> tuple[float, float, float, float]:
        raise OSError("bad header")


class NotAReader:
    pass


def _exposure(e: int, seq: int, mjd: float, filt: str = "r_cam", kind: str = "science") -> dict[str, Any]:
    return {
        "instrument": "Cam",
        "exposure": e,
        "physical_filter": filt,
        "day_obs": 20240101,
        "seq_num": seq,
        "exposure_time": 15.0,
        "mjd_begin": mjd,
        "mjd_end": mjd + 15.0 / 86400,
        "observation_type": kind,
        "target_name": "field",
    }


def _repo(root: Path, exposures: list[dict[str, Any]], raws: bool = True, visit_max: int = 1000) -> Path:
    Butler.create(root).close()
    butler = Butler(root, run="Cam/raw/all")
    reg = butler.registry
    reg.insertUnits("instrument", [{"instrument": "Cam", "detector_max": 2, "visit_max": visit_max}])
    reg.insertUnits("band", [{"band": "r"}, {"band": "g"}])
    reg.insertUnits(
        "physical_filter",
        [
            {"instrument": "Cam", "physical_filter": "r_cam", "band": "r"},
            {"instrument": "Cam", "physical_filter": "g_cam", "band": "g"},
        ],
    )
    reg.insertUnits("detector", [{"instrument": "Cam", "detector": d} for d in (0, 1)])
    _add(butler, exposures, raws)
    butler.close()
    return root


def _add(butler: Butler, exposures: list[dict[str, Any]], raws: bool = True) -> None:
    butler.registry.insertUnits("exposure", exposures)
    if raws:
        for e in exposures:
            for d in (0, 1):
                butler.put(
                    {"image": np.zeros((2, 2))},
                    RAW,
                    {"instrument": "Cam", "exposure": e["exposure"], "detector": d},
                )


def _define(root: Path, *args: str):
    return CliRunner().invoke(main, ["define-visits", str(root), *args])


COLUMNS = {
    "visit_detector_region": "instrument, visit, detector, ra_min, ra_max, dec_min, dec_max",
    "visit_definition": "instrument, exposure, visit",
}


def _rows(root: Path, table: str) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(root / "registry.sqlite3") as db:
        return sorted(db.execute(f"SELECT {COLUMNS.get(table, '*')} FROM {table}").fetchall(), key=str)


@pytest.fixture
def repo(tmp_path):
    return _repo(tmp_path / "repo", [_exposure(10, 1, 60000.0), _exposure(11, 2, 60000.01, "g_cam")])


def test_each_exposure_becomes_a_visit_with_its_fields_and_a_region_per_detector(repo):
    result = _define(repo, "--regions", READER)
    assert result.exit_code == 0, result.output
    assert "defined 2 visits of Cam from 2 exposures, 4 visit-detector regions" in result.output
    butler = Butler(repo)
    reg = butler.registry
    visits = reg.getUnitRecords("visit", [DataId(instrument="Cam", visit=v) for v in (10, 11)])
    assert visits[DataId(instrument="Cam", visit=11)] == {
        "physical_filter": "g_cam",
        "day_obs": 20240101,
        "exposure_time": 15.0,
        "mjd_begin": 60000.01,
        "mjd_end": pytest.approx(60000.01 + 15.0 / 86400),
        "target_name": "field",
        "seeing": None,
    }
    assert {(d["exposure"], d["visit"]) for d in reg.queryDataIds(["exposure", "visit"])} == {
        (10, 10),
        (11, 11),
    }
    butler.close()
    regions = _rows(repo, "visit_detector_region")
    assert ("Cam", 11, 1, 11.1, 11.15, -1.0, 1.0) in regions and len(regions) == 4


def test_a_second_run_says_nothing_new_and_changes_nothing(repo):
    assert _define(repo, "--regions", READER).exit_code == 0
    before = [_rows(repo, t) for t in ("visit", "visit_definition", "visit_detector_region")]
    again = _define(repo, "--regions", READER)
    assert again.exit_code == 0, again.output
    assert again.output.strip() == "nothing new to define: all 2 exposures of Cam with raws are in visits"
    assert [_rows(repo, t) for t in ("visit", "visit_definition", "visit_detector_region")] == before


def test_exposures_ingested_later_are_defined_alone(repo):
    assert _define(repo, "--regions", READER).exit_code == 0
    butler = Butler(repo, run="Cam/raw/all")
    _add(butler, [_exposure(12, 3, 60000.02)])
    butler.close()
    result = _define(repo, "--regions", READER)
    assert result.exit_code == 0, result.output
    assert "defined 1 visits of Cam from 1 exposures, 2 visit-detector regions" in result.output
    assert "2 exposures were in visits already" in result.output


def test_snaps_group_consecutive_exposures_of_one_filter_and_target(tmp_path):
    close = 20.0 / 86400  # 15 s exposure + 5 s gap
    root = _repo(
        tmp_path / "repo",
        [
            _exposure(20, 1, 60000.0),
            _exposure(21, 2, 60000.0 + close),
            _exposure(22, 3, 60000.0 + 2 * close, "g_cam"),  # filter changed: a new visit
            _exposure(23, 5, 60000.1, "g_cam"),  # seq_num jump: a new visit
        ],
    )
    result = _define(root, "--grouping", "snaps", "--regions", READER)
    assert result.exit_code == 0, result.output
    assert {tuple(r[1:]) for r in _rows(root, "visit_definition")} == {(20, 20), (21, 20), (22, 22), (23, 23)}
    visit = Butler(root).registry.getUnitRecords("visit", [DataId(instrument="Cam", visit=20)])
    record = next(iter(visit.values()))
    assert record["exposure_time"] == 30.0 and record["mjd_end"] == pytest.approx(
        60000.0 + close + 15.0 / 86400
    )
    # one region per visit and detector covering both snaps: exposure 20 + 0.1 .. exposure 21 + 0.15
    regions = {r[1:3]: r[3:] for r in _rows(root, "visit_detector_region")}
    assert regions[(20, 1)] == pytest.approx((20.1, 21.15, -1.0, 1.0))


def test_non_science_exposures_are_skipped_and_listed(tmp_path):
    root = _repo(tmp_path / "repo", [_exposure(30, 1, 60000.0), _exposure(31, 2, 60000.01, kind="bias")])
    result = _define(root, "--regions", READER)
    assert result.exit_code == 0, result.output
    assert "skipped 1 exposures (observation_type 'bias', not science): 31" in result.output
    assert [r[1:] for r in _rows(root, "visit_definition")] == [(30, 30)]


def test_without_a_region_reader_visits_are_defined_and_the_missing_regions_said(repo):
    result = _define(repo)
    assert result.exit_code == 0, result.output
    assert (
        "the visits have no sky regions, so they overlap no tract or patch: give --regions" in result.output
    )
    assert _rows(repo, "visit_detector_region") == []


def test_union_box_keeps_a_wrap_through_ra_zero():
    assert union_box([(359.9, 359.95, 0, 1), (359.97, 0.05, 0, 2)]) == pytest.approx((359.9, 0.05, 0, 2))
    assert union_box([(10, 11, -1, 0), (10.5, 12, -2, 1)]) == (10, 12, -2, 1)


def test_group_exposures_one_to_one_keeps_each_id():
    assert group_exposures({5: {}, 3: {}}) == {3: [3], 5: [5]}


# -- errors: one line naming the problem and the fix, nothing written --------------------------------


def _error(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    return result.output.strip()


def test_a_repository_without_instrument_is_refused_with_the_fix(tmp_path):
    Butler.create(tmp_path / "empty").close()
    out = _error(_define(tmp_path / "empty"))
    assert "no instrument is registered in this repository" in out and "supertask register-units" in out


def test_an_unknown_instrument_is_refused_naming_the_registered_ones(repo):
    out = _error(_define(repo, "--instrument", "Cma"))
    assert "unknown instrument 'Cma'; registered: Cam." in out and "Did you mean 'Cam'?" in out


def test_two_instruments_need_instrument(repo):
    butler = Butler(repo, writeable=True)
    butler.registry.insertUnits("instrument", [{"instrument": "Other"}])
    butler.close()
    out = _error(_define(repo))
    assert "this repository has instruments Cam, Other: choose one with --instrument" in out


def test_no_raws_anywhere_is_refused_with_the_ingest_command(tmp_path):
    root = _repo(tmp_path / "repo", [_exposure(10, 1, 60000.0)], raws=False)
    out = _error(_define(root))
    assert "dataset type 'raw' is not registered: ingest the raws first" in out


def test_raws_in_another_collection_are_refused_naming_collections(repo):
    butler = Butler(repo, run="elsewhere")
    butler.close()
    out = _error(_define(repo, "--collections", "elsewhere"))
    assert "no exposure of Cam has a 'raw' dataset in ['elsewhere']" in out and "--collections" in out


def test_an_unknown_collection_is_refused(repo):
    out = _error(_define(repo, "--collections", "Cam/raw/al"))
    assert "Cam/raw/al" in out and "Cam/raw/all" in out


def test_a_reader_that_is_not_a_region_reader_is_refused(repo):
    out = _error(_define(repo, "--regions", f"{__name__}:NotAReader"))
    assert "is not a RegionReader subclass" in out
    out = _error(_define(repo, "--regions", "no_such_module:Reader"))
    assert "cannot import region reader" in out


def test_a_failing_reader_names_the_file_and_nothing_is_written(repo):
    out = _error(_define(repo, "--regions", f"{__name__}:Broken"))
    assert (
        "cannot read the sky region of" in out and "(exposure 10, detector 0) with Broken: bad header" in out
    )
    assert _rows(repo, "visit") == [] and _rows(repo, "visit_definition") == []


def test_visit_ids_at_or_above_visit_max_are_refused(tmp_path):
    root = _repo(tmp_path / "repo", [_exposure(10, 1, 60000.0)], visit_max=10)
    out = _error(_define(root))
    assert "visit ids [10] are not below the instrument's visit_max 10" in out
