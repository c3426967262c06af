"""The demo SuperTasks run quantum by quantum against an in-memory butler that stores
through the repository's real formatters (so every output must survive its storage class)."""

import numpy as np
import pytest
from demo_drp.camera import DETECTORS, INSTRUMENT
from demo_drp.errors import NoWorkFound
from demo_drp.exposure import Exposure
from demo_drp.simulate import demo_reference_catalog, make_bias, make_flat, observing_plan, simulate_raw
from demo_drp.skymap import DEMO_SKYMAP
from demo_drp.tasks import AssembleCoaddTask, CalibrateTask, DetectCoaddTask, IsrTask, MakeWarpTask

from supertask.quantum import Quantum
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset, DatasetType
from supertask.repo.formatters import get_formatter


class FileButler:
    """Stores every dataset as a file through its storage class's formatter."""

    def __init__(self, root):
        self.root = root
        self.paths = {}

    def put(self, obj, dataset):
        formatter = get_formatter(dataset.datasetType.storageClass)
        path = self.root / f"{dataset.name}_{len(self.paths)}{formatter.extension}"
        formatter.write(obj, path)
        self.paths[dataset.key] = (path, formatter)
        return dataset

    def get(self, dataset):
        path, formatter = self.paths[dataset.key]
        return formatter.read(path)


def _ds(task, field, **dataId):
    return Dataset(getattr(task.config, field).datasetType, DataId(dataId))


@pytest.fixture(scope="module")
def pipeline_outputs(tmp_path_factory):
    """Run isr → calibrate → makeWarp → assembleCoadd → detectCoadd over two r-band visits."""
    butler = FileButler(tmp_path_factory.mktemp("repo"))
    refcat = demo_reference_catalog(1)
    visits = [v for v in observing_plan(5, seed=1) if v.band == "r"]
    isr, cal, warp_task, coadd_task, detect = (
        IsrTask(),
        CalibrateTask(),
        MakeWarpTask(),
        AssembleCoaddTask(),
        DetectCoaddTask(),
    )
    refcat_ds = Dataset(DatasetType("ref_cat", (), "Table"), DataId())
    butler.put(refcat, refcat_ds)
    skymap_ds = _ds(warp_task, "skyMap", skymap=DEMO_SKYMAP.name)
    butler.put(DEMO_SKYMAP.to_dict(), skymap_ds)
    calexps = {}
    for visit in visits:
        for det in DETECTORS:
            exp_id = dict(instrument=INSTRUMENT, exposure=visit.id, detector=det.id)
            raw = butler.put(simulate_raw(visit, det, refcat).to_array_dict(), _ds(isr, "raw", **exp_id))
            bias = butler.put(
                make_bias(det).to_array_dict(), _ds(isr, "bias", instrument=INSTRUMENT, detector=det.id)
            )
            flat = butler.put(
                make_flat(det).to_array_dict(), _ds(isr, "flat", instrument=INSTRUMENT, detector=det.id)
            )
            post = _ds(isr, "postISRCCD", **exp_id)
            isr.runQuantum(
                Quantum(
                    "isr",
                    DataId(exp_id),
                    {"raw": [raw], "bias": [bias], "flat": [flat]},
                    {"postISRCCD": [post]},
                ),
                butler,
            )
            vd = dict(instrument=INSTRUMENT, visit=visit.id, detector=det.id)
            calexp, src = _ds(cal, "calexp", **vd), _ds(cal, "src", **vd)
            cal.runQuantum(
                Quantum(
                    "calibrate",
                    DataId(vd),
                    {"postISRCCD": [post], "ref_cat": [refcat_ds]},
                    {"calexp": [calexp], "src": [src]},
                ),
                butler,
            )
            calexps[visit.id, det.id] = calexp
    patch_id = dict(skymap=DEMO_SKYMAP.name, tract=0, patch=10)
    warps = []
    for visit in visits:
        wid = dict(patch_id, instrument=INSTRUMENT, visit=visit.id)
        warp = _ds(warp_task, "warp", **wid)
        inputs = {"calexp": [calexps[visit.id, d.id] for d in DETECTORS], "skyMap": [skymap_ds]}
        warp_task.runQuantum(Quantum("makeWarp", DataId(wid), inputs, {"warp": [warp]}), butler)
        warps.append(warp)
    cid = dict(patch_id, band="r")
    coadd = _ds(coadd_task, "coadd", **cid)
    coadd_task.runQuantum(
        Quantum("assembleCoadd", DataId(cid), {"warp": warps}, {"deepCoadd": [coadd]}), butler
    )
    sources = _ds(detect, "sources", **cid)
    detect.runQuantum(
        Quantum("detectCoadd", DataId(cid), {"deepCoadd": [coadd]}, {"deepCoadd_src": [sources]}), butler
    )
    return butler, refcat, calexps, warps, coadd, sources, cal


def test_calibrate_quantum_writes_a_calexp_with_fitted_zero_point_and_src_table(pipeline_outputs):
    butler, refcat, calexps, *_, cal = pipeline_outputs
    calexp = Exposure.from_array_dict(butler.get(next(iter(calexps.values()))))
    assert calexp.wcs is not None and calexp.variance is not None
    assert 30.5 < calexp.metadata["zero_point"] < 31.3
    assert calexp.metadata["n_matches"] >= 10
    src = butler.get(Dataset(cal.config.src.datasetType, next(iter(calexps.values())).dataId))
    assert {"ra", "dec", "mag", "ref_id"} <= set(src.dtype.names)
    assert (src["ref_id"] > 0).sum() == calexp.metadata["n_matches"]


def test_warp_quanta_cover_the_patch_and_name_their_detectors(pipeline_outputs):
    butler, _, _, warps, *_ = pipeline_outputs
    for ref in warps:
        warp = Exposure.from_array_dict(butler.get(ref))
        assert warp.metadata["visit"] == ref.dataId["visit"]
        assert warp.metadata["patch"] == 10 and warp.metadata["tract"] == 0
        assert warp.planes["coverage"].mean() > 0.5
        assert warp.metadata["detectors"]


def test_coadd_quantum_catalogue_recovers_reference_magnitudes(pipeline_outputs):
    butler, refcat, _, warps, coadd_ref, sources_ref, _ = pipeline_outputs
    coadd = Exposure.from_array_dict(butler.get(coadd_ref))
    assert coadd.planes["n_inputs"].max() == len(warps)
    catalog = butler.get(sources_ref)
    assert len(catalog) >= 10
    patch = DEMO_SKYMAP.patch(0, 10)
    x, y = patch.wcs.sky_to_pixel(refcat["ra"], refcat["dec"])
    d2 = (catalog["x"][:, None] - x[None, :]) ** 2 + (catalog["y"][:, None] - y[None, :]) ** 2
    nearest = d2.argmin(axis=1)
    bright = catalog["snr"] > 50
    close = np.sqrt(d2[np.arange(len(catalog)), nearest]) < 0.5
    assert close[bright].mean() > 0.9
    dmag = catalog["mag"][bright & close] - refcat["r_mag"][nearest[bright & close]]
    assert abs(np.median(dmag)) < 0.02


def test_assemble_coadd_with_only_empty_warps_declares_no_work():
    empty = Exposure(
        image=np.full((4, 4), np.nan),
        variance=np.full((4, 4), np.nan),
        planes={"coverage": np.zeros((4, 4), dtype=np.float32)},
        metadata={"band": "r", "visit": 1},
    )
    with pytest.raises(NoWorkFound, match="none of the 1 warps has pixels"):
        AssembleCoaddTask().run({DataId(visit=1): empty.to_array_dict()})


def test_task_configs_let_names_change_but_not_units():
    config = CalibrateTask.ConfigClass()
    config.calexp.name = "calexp_v2"
    assert CalibrateTask(config=config).getDatasetClasses()["outputs"]["calexp"].name == "calexp_v2"
    assert CalibrateTask().getDatasetClasses()["inputs"]["refCat"].units == ()


def test_make_warp_of_detectors_that_miss_the_patch_declares_no_work(pipeline_outputs):
    butler, _, calexps, *_ = pipeline_outputs
    far_patch = DEMO_SKYMAP.patch(11, 0)  # a tract far from the demo field
    inputs = {ref.dataId: butler.get(ref) for ref in list(calexps.values())[:2]}
    with pytest.raises(NoWorkFound, match="none of the 2 detectors .* has pixels on it"):
        MakeWarpTask().run(inputs, DEMO_SKYMAP.to_dict(), far_patch.tract, far_patch.index)


def test_importing_the_demo_tasks_does_not_import_scipy():
    """Every batch job imports its task module; scipy costs ~0.3-0.8 s and isr never needs it."""
    import subprocess
    import sys

    code = "import sys, demo_drp.tasks; print(sorted(m for m in sys.modules if m.startswith('scipy')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
