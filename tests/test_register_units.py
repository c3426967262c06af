"""``supertask register-units``: unit records from YAML and CSV files, on SQLite and PostgreSQL."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest_repo import db_url, postgres_schema_url  # noqa: F401

from supertask.cli.main import main
from supertask.repo.butler import Butler
from supertask.repo.unit_records import UnitRecordsError, element_order, read_unit_records
from supertask.repo.units import Universe

CAMERA = """\
# listed out of dependency order on purpose: the command sorts them
detector:
  - {instrument: Cam, detector: 0, full_name: S00, raft: R00, purpose: SCIENCE}
  - {instrument: Cam, detector: 1, full_name: S01, raft: R00, purpose: SCIENCE}
physical_filter: [{instrument: Cam, physical_filter: Cam-r, band: r}]
band: [{band: r}]
instrument: [{instrument: Cam, class_name: my.camera, detector_max: 2, visit_max: 1000}]
"""
EXPOSURES = """\
instrument,exposure,physical_filter,day_obs,exposure_time,observation_type
Cam,1,Cam-r,20240101,30.0,science
Cam,2,Cam-r,20240101,,science
"""
VISITS = """\
visit:
  - {instrument: Cam, visit: 1, physical_filter: Cam-r, seeing: 0.7}
visit_definition: [{instrument: Cam, exposure: 1, visit: 1}]
visit_detector_region:
  - {instrument: Cam, visit: 1, detector: 0, ra_min: 10.0, ra_max: 10.1, dec_min: -5.0, dec_max: -4.9}
"""


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture
def repo(tmp_path, db_url) -> Path:  # noqa: F811
    root = tmp_path / "repo"
    with warnings.catch_warnings():  # the test server's URL carries its password
        warnings.simplefilter("ignore")
        Butler.create(root, db_url=None if db_url.startswith("sqlite") else db_url).close()
    return root


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_camera_its_exposures_and_visits_are_registered_from_yaml_and_csv(repo, tmp_path):
    files = [write(tmp_path, "camera.yaml", CAMERA), write(tmp_path, "exposure.csv", EXPOSURES)]
    result = cli("register-units", repo, *files, write(tmp_path, "visits.yaml", VISITS))
    assert result.exit_code == 0, result.output
    assert "detector: 2 rows" in result.output and "exposure: 2 rows" in result.output
    butler = Butler(repo, writeable=False)
    reg = butler.registry
    assert reg.countUnitRows("exposure") == 2 and reg.countUnitRows("visit_definition") == 1
    records = reg.getUnitRecords("exposure", reg.queryDataIds(["exposure"]))
    by_id = {d["exposure"]: r for d, r in records.items()}
    assert by_id[1]["exposure_time"] == 30.0 and by_id[2]["exposure_time"] is None
    assert by_id[1]["day_obs"] == 20240101 and by_id[1]["physical_filter"] == "Cam-r"
    assert [d["visit"] for d in reg.queryDataIds(["visit"], where="band = 'r'")] == [1]
    butler.close()
    again = cli("register-units", repo, *files)  # the same rows again: nothing changes
    assert again.exit_code == 0, again.output


def test_a_row_contradicting_a_registered_one_is_refused(repo, tmp_path):
    assert cli("register-units", repo, write(tmp_path, "camera.yaml", CAMERA)).exit_code == 0
    changed = CAMERA.replace("full_name: S01", "full_name: S99")
    result = cli("register-units", repo, write(tmp_path, "changed.yaml", changed))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        "detector {'instrument': 'Cam', 'detector': 1} already exists with different values" in result.output
    )


def test_csv_element_from_option(repo, tmp_path):
    assert cli("register-units", repo, write(tmp_path, "camera.yaml", CAMERA)).exit_code == 0
    result = cli("register-units", repo, write(tmp_path, "night1.csv", EXPOSURES), "--element", "exposure")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("name", "text", "element", "expected"),
    [
        ("u.yaml", "detectors: []\n", None, "u.yaml: unknown unit or relation 'detectors'. Did you mean 'detector'"),
        ("u.yaml", "detector: [{instrument: Cam, detector: 0, ful_name: S}]\n", None, "detector row 1 has unknown column 'ful_name'. Did you mean 'full_name'"),
        ("u.yaml", "detector: [{instrument: Cam}]\n", None, "detector row 1 lacks detector; every row needs detector, instrument"),
        ("u.yaml", "exposure: [{instrument: Cam, exposure: 1}]\n", None, "exposure row 1 lacks physical_filter"),
        ("u.yaml", "detector: [{instrument: Cam, detector: zero}]\n", None, "detector row 1: detector = 'zero' is not a valid int"),
        ("u.yaml", "detector: [{instrument: Cam, detector: 1.5}]\n", None, "detector = 1.5 is not a valid int"),
        ("u.yaml", "detector: {instrument: Cam}\n", None, "'detector' must be a list of rows"),
        ("u.yaml", "detector: [[Cam, 0]]\n", None, "detector row 1 must be a mapping of column -> value"),
        ("u.yaml", "- detector\n", None, "a unit records file is a mapping of unit or relation name -> list of rows"),
        ("u.yaml", "detector: [{instrument: Cam\n", None, "u.yaml, line 2: malformed YAML"),
        ("u.yaml", "visit_detector_patch_overlap: []\n", None, "'visit_detector_patch_overlap' is computed by the registry"),
        ("u.yaml", "detector: []\n", "detector", "--element is for CSV files"),
        ("u.txt", "x\n", None, "unit records must be a .yaml or .csv file, not .txt"),
        ("detector.csv", "instrument,detector\nCam,0,extra\n", None, "line 2 has more cells than the header has columns"),
        ("detector.csv", "instrument,detector\nCam,x\n", None, "detector.csv: detector row 2: detector = 'x' is not a valid int"),
        ("things.csv", "instrument\nCam\n", None, "things.csv: unknown unit or relation 'things'"),
        ("e.csv", "instrument,exposure\nCam,1\n", "exposure", "exposure row 2 lacks physical_filter"),
    ],
)  # fmt: skip
def test_register_units_errors_name_file_row_and_fix(repo, tmp_path, name, text, element, expected):
    args = ["register-units", repo, write(tmp_path, name, text)] + (["--element", element] if element else [])
    result = cli(*args)
    assert result.exit_code == 1, result.output
    assert (
        expected in result.output and "Traceback" not in result.output and "unexpected" not in result.output
    )


def test_nothing_is_inserted_when_one_file_is_wrong(repo, tmp_path):
    good = write(tmp_path, "camera.yaml", CAMERA)
    bad = write(tmp_path, "exposure.csv", "instrument,exposure\nCam,1\n")
    assert cli("register-units", repo, good, bad).exit_code == 1
    butler = Butler(repo, writeable=False)
    assert butler.registry.countUnitRows("instrument") == 0
    butler.close()


def test_a_missing_file_is_one_line(repo, tmp_path):
    result = cli("register-units", repo, tmp_path / "nowhere.yaml")
    assert result.exit_code == 1 and "cannot read unit records file" in result.output


def test_element_order_puts_what_a_unit_needs_first():
    order = element_order(Universe.default())
    assert order.index("band") < order.index("physical_filter") < order.index("exposure")
    assert order.index("instrument") < order.index("detector")
    assert order.index("visit") < order.index("visit_definition")


def test_csv_values_are_converted_to_the_column_types(tmp_path):
    records = read_unit_records(write(tmp_path, "exposure.csv", EXPOSURES), Universe.default())
    first = records["exposure"][0]
    assert (
        first["exposure"] == 1 and first["exposure_time"] == 30.0 and first["observation_type"] == "science"
    )
    assert records["exposure"][1]["exposure_time"] is None
    with pytest.raises(UnitRecordsError):
        read_unit_records(write(tmp_path, "x.csv", "a\n1\n"), Universe.default(), "bogus")
