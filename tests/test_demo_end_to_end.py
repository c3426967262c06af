"""The demo pipeline file, planned and run through the real planner, executor and repository."""

from pathlib import Path

import numpy as np
import pytest
from demo_drp.data import DEFAULTS, make_demo_repo
from demo_drp.exposure import Exposure
from demo_drp.simulate import demo_reference_catalog
from demo_drp.validate import summarize

from supertask.pipeline import Pipeline

PIPELINE = Path(__file__).resolve().parents[1] / "examples" / "demo_pipeline.yaml"


def test_demo_pipeline_file_reads_exactly_what_demo_data_writes():
    pipeline = Pipeline.fromFile(PIPELINE)
    assert list(pipeline) == ["isr", "calibrate", "makeWarp", "assembleCoadd", "detectCoadd"]
    consumed = {dt.name for label in pipeline for dt in pipeline[label].datasetClasses()["inputs"].values()}
    produced = {dt.name for label in pipeline for dt in pipeline[label].datasetClasses()["outputs"].values()}
    assert consumed - produced == {"raw", "bias", "flat", "ref_cat", "skyMap"}


@pytest.fixture(scope="module")
def r_band_tile(tmp_path_factory):
    from supertask.execution import run_pipeline

    root = tmp_path_factory.mktemp("e2e") / "repo"
    make_demo_repo(root, n_exposures=3, seed=1).close()
    result = run_pipeline(
        PIPELINE,
        root,
        where="tract = 0 AND band = 'r'",
        input_collections=[DEFAULTS],
        output_run="demo/e2e",
        processes=1,
    )
    from supertask.repo.butler import Butler

    return result, Butler(root, collections=["demo/e2e", DEFAULTS])


def test_every_quantum_of_the_r_band_tile_succeeds_and_all_detectors_are_calibrated(r_band_tile):
    result, butler = r_band_tile
    # A detector that only grazes a patch within the registry's overlap margin gives a
    # do-nothing quantum (NoWorkFound); nothing else may fail.
    real = [
        f.reason
        for f in result.failures
        if "NoWorkFound" not in f.reason and not f.reason.startswith("not run: upstream")
    ]
    assert not real
    calexps = butler.registry.queryDatasets("calexp", ["demo/e2e"])
    # Visit 101 (r) straddles tract 0's edge: calibrate still runs for all 6 of its detectors.
    assert sorted(d.dataId["detector"] for d in calexps) == list(range(6))
    assert {d.dataId["visit"] for d in calexps} == {101}


def test_coadd_catalogues_of_the_tile_match_the_reference_catalogue(r_band_tile):
    _, butler = r_band_tile
    refcat = demo_reference_catalog(1)
    catalogs = [butler.get(d) for d in butler.registry.queryDatasets("deepCoadd_src", ["demo/e2e"])]
    assert len(catalogs) >= 6
    summary = summarize(np.concatenate(catalogs), refcat, "r")
    assert summary.n_matched > 0.9 * summary.n_sources, str(summary)
    assert summary.n_bright > 50, str(summary)
    assert abs(summary.median_dmag) < 0.02, str(summary)
    assert summary.robust_rms_dmag < 0.03, str(summary)
    assert summary.median_sep_arcsec < 0.2, str(summary)


def test_coadd_has_every_overlapping_warp(r_band_tile):
    _, butler = r_band_tile
    for ref in butler.registry.queryDatasets("deepCoadd", ["demo/e2e"]):
        coadd = Exposure.from_array_dict(butler.get(ref))
        assert coadd.metadata["visits"] == [101]
        assert coadd.planes["n_inputs"].max() == 1
