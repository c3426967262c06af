"""The demo's raws as files, ingested and made into visits with the CLI, give the repository the generator makes.

``make demo`` writes its raws with ``supertask demo-data --raw-files`` and puts them in with
``register-units``, ``ingest`` and ``define-visits``; planning joins the same exposures,
visits, regions and patch overlaps, and the raws have the same checksums, as when the
generator writes them straight into the repository (only a visit's ``seeing``, a truth of
the simulation, is not known to define-visits).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner

from supertask.cli.main import main

TABLES = {
    "exposure": "*",
    "visit_definition": "instrument, exposure, visit",
    "visit_detector_region": "instrument, visit, detector, ra_min, ra_max, dec_min, dec_max",
    "visit_detector_patch_overlap": "instrument, visit, detector, skymap, tract, patch",
    "visit": "instrument, visit, physical_filter, day_obs, exposure_time, mjd_begin, mjd_end, target_name",
}


def _tables(root: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(root / "registry.sqlite3") as db:
        out = {t: sorted(db.execute(f"SELECT {c} FROM {t}").fetchall(), key=str) for t, c in TABLES.items()}
        out["raw"] = sorted(
            db.execute(
                "SELECT d.data_id_key, d.checksum, d.size FROM dataset d JOIN dataset_type t "
                "ON d.dataset_type_id = t.id WHERE t.name = 'raw'"
            ).fetchall()
        )
    return out


def _ok(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_raw_files_ingested_with_the_cli_give_the_generators_repository(tmp_path):
    from demo_drp.data import RAW_RUN, RAW_UNITS_FILE, make_demo_repo

    make_demo_repo(tmp_path / "direct", n_exposures=2).close()
    raws = tmp_path / "raws"
    make_demo_repo(tmp_path / "ingested", n_exposures=2, raw_files=raws).close()
    assert sorted(p.name for p in raws.iterdir())[:2] == ["raw_100_0.npz", "raw_100_0.npz.yaml"]
    assert _tables(tmp_path / "ingested")["raw"] == []

    repo = str(tmp_path / "ingested")
    _ok(["register-units", repo, str(tmp_path / RAW_UNITS_FILE)])
    _ok(
        ["ingest", repo, str(raws), "--run", RAW_RUN, "-t", "raw"]
        + ["--units", "instrument,exposure,detector", "--storage-class", "ArrayDict"]
    )
    out = _ok(["define-visits", repo, "--regions", "demo_drp.visits:DemoCamRegions"])
    assert "defined 2 visits of DemoCam from 2 exposures, 12 visit-detector regions" in out

    direct, ingested = _tables(tmp_path / "direct"), _tables(tmp_path / "ingested")
    assert ingested["visit_detector_patch_overlap"]  # the regions overlap the skymap's patches
    for table in (*TABLES, "raw"):
        assert ingested[table] == direct[table], table
