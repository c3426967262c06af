"""The demo repository: registered units, overlaps the planner relies on, datasets, and re-runs."""

import numpy as np
import pytest
from click.testing import CliRunner
from conftest_repo import postgres_schema_url  # noqa: F401
from demo_drp.cli import demo_data
from demo_drp.data import DEFAULTS, RAW, REF_CAT, SKYMAP_DS, make_demo_repo
from demo_drp.exposure import Exposure
from demo_drp.skymap import DEMO_SKYMAP, SkyMap

from supertask.repo.butler import Butler
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "repo"
    butler = make_demo_repo(root, n_exposures=3, seed=1)
    butler.close()
    return root


def test_repo_has_every_raw_and_calibration_in_the_default_chain(repo):
    butler = Butler(repo, collections=[DEFAULTS])
    raws = butler.registry.queryDatasets(RAW, [DEFAULTS])
    assert len(raws) == 3 * 6
    raw = Exposure.from_array_dict(butler.get(raws[0]))
    assert raw.image.shape == (200, 200) and raw.wcs is not None
    assert raw.metadata["band"] in ("g", "r", "i")
    assert len(butler.get(Dataset(REF_CAT, DataId()))) > 500
    skymap = SkyMap.from_dict(butler.get(Dataset(SKYMAP_DS, DataId(skymap=DEMO_SKYMAP.name))))
    assert skymap == DEMO_SKYMAP
    for name in ("bias", "flat"):
        assert len(butler.registry.queryDatasets(name, [DEFAULTS])) == 6


def test_overlaps_put_every_visit_on_tract_zero_and_some_detectors_on_tract_one(repo):
    butler = Butler(repo)
    rows = butler.registry.queryDataIds(["instrument", "visit", "detector", "skymap", "tract", "patch"])
    by_tract = {}
    for row in rows:
        by_tract.setdefault(row["tract"], set()).add((row["visit"], row["detector"]))
    assert {v for v, _ in by_tract[0]} == {100, 101, 102}
    assert by_tract.get(1), "no visit reaches into tract 1: tile-edge behaviour would go untested"
    assert len(by_tract[1]) < len(by_tract[0])


def test_overlap_rows_agree_with_pixel_geometry(repo):
    """Every (visit, detector) whose pixels land on a tract-0 patch is registered as overlapping it."""
    from demo_drp.camera import DETECTORS
    from demo_drp.simulate import observing_plan

    butler = Butler(repo)
    registered = {
        (r["visit"], r["detector"], r["patch"])
        for r in butler.registry.queryDataIds(["instrument", "visit", "detector", "skymap", "tract", "patch"])
        if r["tract"] == 0
    }
    tract = DEMO_SKYMAP.tract(0)
    for visit in observing_plan(3, seed=1):
        for det in DETECTORS:
            wcs = det.wcs(visit.true_boresight_ra, visit.true_boresight_dec)
            xs, ys = np.meshgrid(np.arange(0, 200, 10), np.arange(0, 200, 10))
            x, y = tract.wcs.sky_to_pixel(*wcs.pixel_to_sky(xs.ravel(), ys.ravel()))
            inside = (x >= 0) & (x < tract.width) & (y >= 0) & (y < tract.height)
            patches = set(
                ((y[inside] // tract.patch_size) * tract.n_patches_x + x[inside] // tract.patch_size).astype(
                    int
                )
            )
            for patch in patches:
                assert (visit.id, det.id, patch) in registered


def test_rerun_adds_missing_exposures_and_keeps_existing_ones(tmp_path):
    root = tmp_path / "repo"
    make_demo_repo(root, n_exposures=1).close()
    butler = make_demo_repo(root, n_exposures=2)
    assert len(butler.registry.queryDatasets(RAW, [DEFAULTS])) == 12


def test_rerun_with_another_seed_is_refused_with_advice(tmp_path):
    root = tmp_path / "repo"
    make_demo_repo(root, n_exposures=1, seed=1).close()
    with pytest.raises(ValueError, match="Use a new repository directory for another seed"):
        make_demo_repo(root, n_exposures=1, seed=2)


def test_demo_data_command_creates_the_repository(tmp_path):
    result = CliRunner().invoke(demo_data, [str(tmp_path / "repo"), "--exposures", "1", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "wrote 6 raw images" in result.output
    assert "DemoCam/defaults" in result.output
    assert (tmp_path / "repo" / "butler.yaml").exists()


def test_demo_data_command_rejects_zero_exposures(tmp_path):
    result = CliRunner().invoke(demo_data, [str(tmp_path / "repo"), "--exposures", "0"])
    assert result.exit_code == 2
    assert "--exposures" in result.output


@pytest.mark.postgres
def test_demo_repo_on_postgresql_has_the_same_overlaps_as_on_sqlite(tmp_path, repo, postgres_schema_url):  # noqa: F811
    units = ["instrument", "visit", "detector", "skymap", "tract", "patch"]
    import warnings

    with (
        warnings.catch_warnings()
    ):  # the test server's URL carries a password; the warning is tested elsewhere
        warnings.filterwarnings("ignore", message="the registry URL contains a password")
        butler = make_demo_repo(tmp_path / "pg", n_exposures=3, db_url=postgres_schema_url)
    on_postgres = {tuple(sorted(r.items())) for r in butler.registry.queryDataIds(units)}
    on_sqlite = {tuple(sorted(r.items())) for r in Butler(repo).registry.queryDataIds(units)}
    assert on_postgres == on_sqlite
    assert len(butler.registry.queryDatasets(RAW, [DEFAULTS])) == 18
