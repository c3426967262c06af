"""``supertask ingest`` and `supertask.repo.ingest`: raw files into a repository, on SQLite and PostgreSQL.

Every reason a file is refused is checked with its message, beside files that are ingested
all the same; ``move`` loses no file when registration fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest_repo import db_url, postgres_schema_url  # noqa: F401
from support.fits_camera import INSTRUMENT as FITS_INSTRUMENT
from support.fits_camera import FitsCamReader, write_fits

from supertask.cli.main import main
from supertask.repo import ingest as ingest_module
from supertask.repo.butler import Butler
from supertask.repo.dataset import Dataset, DatasetType
from supertask.repo.datastore import checksum_file
from supertask.repo.ingest import find_files, ingest_files
from supertask.repo.metadata import IndexReader, MetadataError, SidecarReader, read_fits_header

RAW = DatasetType("raw", ("instrument", "exposure", "detector"), "ArrayDict")
RUN = "Cam/raw/all"
UNITS = """\
instrument: [{instrument: Cam, detector_max: 2}]
band: [{band: g}]
physical_filter: [{instrument: Cam, physical_filter: Cam-g, band: g}]
detector: [{instrument: Cam, detector: 0}, {instrument: Cam, detector: 1}]
exposure:
  - {instrument: Cam, exposure: 1, physical_filter: Cam-g}
  - {instrument: Cam, exposure: 2, physical_filter: Cam-g}
"""


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture
def repo(tmp_path, db_url) -> Path:  # noqa: F811
    """A repository (each backend) with instrument Cam, detectors 0-1, exposures 1-2."""
    root = tmp_path / "repo"
    with warnings.catch_warnings():  # the test server's URL carries its password
        warnings.simplefilter("ignore")
        Butler.create(root, db_url=None if db_url.startswith("sqlite") else db_url).close()
    (tmp_path / "units.yaml").write_text(UNITS)
    result = cli("register-units", root, tmp_path / "units.yaml")
    assert result.exit_code == 0, result.output
    return root


def raw_file(directory: Path, exposure: int, detector: int, sidecar: str | None = "yaml", **extra) -> Path:
    """``raw_E_D.npz`` whose image encodes its data ID, with a sidecar of its unit values."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"raw_{exposure}_{detector}.npz"
    np.savez(path, image=np.full((2, 2), exposure * 10 + detector))
    values = {"instrument": "Cam", "exposure": exposure, "detector": detector, **extra}
    if sidecar == "yaml":
        (directory / f"{path.name}.yaml").write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
    elif sidecar == "json":
        import json

        (directory / f"{path.name}.json").write_text(json.dumps(values))
    return path


def registered(root: Path) -> dict[tuple[int, int], int]:
    """(exposure, detector) -> the value in the image of each raw registered in RUN (read through the Butler)."""
    butler = Butler(root, collections=[RUN], writeable=False)
    try:
        found = butler.registry.queryDatasets(RAW, [RUN])
        return {
            (d.dataId["exposure"], d.dataId["detector"]): int(butler.get(d, verify=True)["image"][0, 0])
            for d in found
        }
    finally:
        butler.close()


def test_a_directory_of_raws_with_sidecars_is_ingested(repo, tmp_path):
    raws = tmp_path / "raws"
    sources = [raw_file(raws, e, d, sidecar="yaml" if d == 0 else "json") for e in (1, 2) for d in (0, 1)]
    result = cli(
        "ingest",
        repo,
        raws,
        "--run",
        RUN,
        "--units",
        "instrument,exposure,detector",
        "--storage-class",
        "ArrayDict",
    )
    assert result.exit_code == 0, result.output
    assert "ingested 4 files into 'Cam/raw/all' (copy)" in result.output and "skipped" not in result.output
    assert registered(repo) == {(1, 0): 10, (1, 1): 11, (2, 0): 20, (2, 1): 21}
    assert all(p.exists() for p in sources)  # copied


def test_every_refusal_is_summarised_with_its_reason_and_the_others_are_ingested(repo, tmp_path):
    raws = tmp_path / "raws"
    raw_file(raws, 1, 0)
    raw_file(raws, 1, 1)
    good = cli(
        "ingest",
        repo,
        raws,
        "--run",
        RUN,
        "-t",
        "raw",
        "--units",
        "instrument,exposure,detector",
        "--storage-class",
        "ArrayDict",
    )
    assert good.exit_code == 0, good.output
    raw_file(raws, 2, 0)  # new: ingested in the second pass
    raw_file(raws, 2, 1, sidecar=None)  # no metadata
    np.savez(raws / "raw_2_5.npz", image=np.zeros(1))
    (raws / "raw_2_5.npz.yaml").write_text("instrument: Cam\nexposure: two\ndetector: 5\n")  # invalid value
    np.savez(raws / "lacking.npz", image=np.zeros(1))
    (raws / "lacking.npz.yaml").write_text("instrument: Cam\nexposure: 2\n")  # no detector
    np.savez(raws / "listy.npz", image=np.zeros(1))
    (raws / "listy.npz.yaml").write_text("- 1\n- 2\n")
    np.savez(raws / "broken.npz", image=np.zeros(1))
    (raws / "broken.npz.yaml").write_text("instrument: [Cam\n")
    raw_file(raws, 9, 0)  # exposure 9 is not registered
    copy = tmp_path / "copy"
    raw_file(copy, 2, 0)  # the same data ID as raws/raw_2_0.npz
    (raws / "notes.txt").write_text("not a raw")
    result = cli("ingest", repo, raws, copy, "--run", RUN)
    assert result.exit_code == 1, result.output
    out = result.output
    assert "ingested 1 files into 'Cam/raw/all'" in out and "skipped 10 files:" in out
    assert "wrong file type: 1" in out and "notes.txt: storage class ArrayDict reads .npz files" in out
    assert (
        "no metadata: 1" in out
        and "raw_2_1.npz: no metadata: no sidecar raw_2_1.npz.yaml (or .json) beside it" in out
    )
    assert "invalid metadata: 4" in out
    assert "raw_2_5.npz: data ID value for 'exposure' must be an int, got 'two'" in out
    assert "lacking.npz: data ID {'instrument': 'Cam', 'exposure': 2} lacks 'detector'" in out
    assert "listy.npz: sidecar listy.npz.yaml must be a mapping of unit -> value" in out
    assert "broken.npz: sidecar broken.npz.yaml is not valid YAML" in out
    assert (
        "duplicate: 1" in out
        and f"same data ID {{'detector': 0, 'exposure': 2, 'instrument': 'Cam'}} as {raws / 'raw_2_0.npz'}"
        in out
    )
    assert (
        "already ingested: 2" in out
        and "raw {'detector': 0, 'exposure': 1, 'instrument': 'Cam'} is in 'Cam/raw/all' already" in out
    )
    assert (
        "unknown units: 1" in out
        and "raw_9_0.npz: exposure {'exposure': 9, 'instrument': 'Cam'} is not registered; register it first (supertask register-units)"
        in out
    )
    assert "Traceback" not in out
    assert registered(repo) == {(1, 0): 10, (1, 1): 11, (2, 0): 20}


def test_a_file_that_cannot_be_placed_is_skipped_and_the_others_ingested(repo, tmp_path, monkeypatch):
    raws = tmp_path / "raws"
    files = [raw_file(raws, 1, d) for d in (0, 1)]
    place = ingest_module._place

    def failing(source, target, mode, made=None):
        if source.name == "raw_1_1.npz":
            raise PermissionError(13, "Permission denied", str(source))
        return place(source, target, mode, made)

    monkeypatch.setattr(ingest_module, "_place", failing)
    butler = Butler(repo, writeable=True)
    report = ingest_files(butler, RAW, files, SidecarReader(), run=RUN, mode="copy")
    butler.close()
    assert report.ingested == 1 and [(s.reason, Path(s.path).name) for s in report.skipped] == [
        ("transfer failed", "raw_1_1.npz")
    ]
    assert "cannot copy it: [Errno 13] Permission denied" in report.skipped[0].detail
    assert registered(repo) == {(1, 0): 10}


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink", "move"])
def test_transfer_modes(repo, tmp_path, mode):
    raws = tmp_path / "raws"
    files = [raw_file(raws, 1, d) for d in (0, 1)]
    checksums = {f.name: checksum_file(f) for f in files}
    inode = files[0].stat().st_ino
    butler = Butler(repo, writeable=True)
    report = ingest_files(butler, RAW, files, SidecarReader(), run=RUN, mode=mode)
    path, size, checksum = butler.registry.getDatasetLocation(
        butler.registry.findDataset(RAW, {"instrument": "Cam", "exposure": 1, "detector": 0}, [RUN])
    )
    butler.close()
    assert report.ok and report.ingested == 2
    stored = repo / path
    assert checksum == checksums["raw_1_0.npz"] and size == stored.stat().st_size
    assert files[0].exists() == (mode != "move")
    assert stored.is_symlink() == (mode == "symlink")
    assert (stored.stat().st_ino == inode) == (mode in ("hardlink", "move", "symlink"))
    assert registered(repo) == {(1, 0): 10, (1, 1): 11}


def test_move_loses_no_file_when_registration_fails(repo, tmp_path, monkeypatch):
    raws = tmp_path / "raws"
    files = [raw_file(raws, e, d) for e in (1, 2) for d in (0, 1)]
    butler = Butler(repo, writeable=True)

    def refuse(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(butler.registry, "insertDatasets", refuse)
    with pytest.raises(RuntimeError, match="the database went away"):
        ingest_files(butler, RAW, files, SidecarReader(), run=RUN, mode="move")
    butler.close()
    assert all(f.exists() for f in files)  # every original is where it was
    assert not list((repo / RUN).rglob("*.npz"))  # and nothing unregistered is left in the datastore
    monkeypatch.undo()
    result = cli("ingest", repo, raws, "--run", RUN, "--transfer", "move")  # a rerun ingests them all
    assert result.exit_code == 0, result.output
    assert not any(f.exists() for f in files) and len(registered(repo)) == 4


def test_a_leftover_of_an_interrupted_ingest_is_replaced(repo, tmp_path):
    raws = tmp_path / "raws"
    source = raw_file(raws, 1, 0)
    butler = Butler(repo, writeable=True)
    butler.registry.registerDatasetType(RAW)
    leftover = repo / butler.datastore.path(RAW, {"instrument": "Cam", "exposure": 1, "detector": 0}, RUN)
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a file")
    report = ingest_files(butler, RAW, [source], SidecarReader(), run=RUN, mode="copy")
    butler.close()
    assert report.ok and registered(repo) == {(1, 0): 10}


def test_index_files_give_the_unit_values_of_many_files(repo, tmp_path):
    raws = tmp_path / "raws"
    for e, d in ((1, 0), (1, 1), (2, 0)):
        raw_file(raws, e, d, sidecar=None)
    (raws / "index.csv").write_text(
        "file,instrument,exposure,detector\nraw_1_0.npz,Cam,1,0\nraw_1_1.npz,Cam,1,1\n"
    )
    result = cli(
        "ingest",
        repo,
        raws,
        "--pattern",
        "*.npz",
        "--index",
        raws / "index.csv",
        "--run",
        RUN,
        "--units",
        "instrument,exposure,detector",
        "--storage-class",
        "ArrayDict",
    )
    assert result.exit_code == 1
    assert (
        f"raw_2_0.npz: no metadata: raw_2_0.npz is not listed in index {raws / 'index.csv'}" in result.output
    )
    (raws / "index.yaml").write_text("raw_2_0.npz: {instrument: Cam, exposure: 2, detector: 0}\n")
    result = cli("ingest", repo, raws / "raw_2_0.npz", "--index", raws / "index.yaml", "--run", RUN)
    assert result.exit_code == 0, result.output
    assert registered(repo) == {(1, 0): 10, (1, 1): 11, (2, 0): 20}


def test_index_errors(tmp_path):
    (tmp_path / "i.csv").write_text("name,exposure\nx,1\n")
    with pytest.raises(
        MetadataError, match="has no 'file' column; its header must name 'file' and the units"
    ):
        IndexReader(tmp_path / "i.csv")
    (tmp_path / "i.yaml").write_text("- 1\n")
    with pytest.raises(MetadataError, match="must map each file to its unit values"):
        IndexReader(tmp_path / "i.yaml")
    with pytest.raises(MetadataError, match="cannot read index"):
        IndexReader(tmp_path / "missing.csv")


def test_a_file_list_names_the_files(repo, tmp_path):
    raws = tmp_path / "raws"
    for d in (0, 1):
        raw_file(raws, 1, d)
    (tmp_path / "list.txt").write_text("# the first detector only\nraws/raw_1_0.npz\n\n")
    result = cli(
        "ingest",
        repo,
        "--file-list",
        tmp_path / "list.txt",
        "--run",
        RUN,
        "--units",
        "instrument,exposure,detector",
        "--storage-class",
        "ArrayDict",
    )
    assert result.exit_code == 0, result.output
    assert registered(repo) == {(1, 0): 10}


def test_find_files_skips_sidecars_and_hidden_files(tmp_path):
    raw_file(tmp_path / "a", 1, 0)
    raw_file(tmp_path / "a" / "b", 2, 0, sidecar="json")
    (tmp_path / "a" / ".hidden.npz").write_bytes(b"")
    (tmp_path / "a" / "lonely.yaml").write_text("x: 1\n")  # not a sidecar: its data file is absent
    names = sorted(p.name for p in find_files([tmp_path / "a"]))
    assert names == ["lonely.yaml", "raw_1_0.npz", "raw_2_0.npz"]
    assert [p.name for p in find_files([tmp_path / "a"], pattern="raw_2*")] == ["raw_2_0.npz"]


def test_raws_of_a_fits_camera_are_ingested_by_its_header_reader(tmp_path, db_url):  # noqa: F811
    root = tmp_path / "repo"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Butler.create(root, db_url=None if db_url.startswith("sqlite") else db_url).close()
    (tmp_path / "units.yaml").write_text(
        f"instrument: [{{instrument: {FITS_INSTRUMENT}}}]\nband: [{{band: r}}]\n"
        f"physical_filter: [{{instrument: {FITS_INSTRUMENT}, physical_filter: r1, band: r}}]\n"
        f"detector: [{{instrument: {FITS_INSTRUMENT}, detector: 7}}]\n"
        f"exposure: [{{instrument: {FITS_INSTRUMENT}, exposure: 1234, physical_filter: r1}}]\n"
    )
    assert cli("register-units", root, tmp_path / "units.yaml").exit_code == 0
    raws = tmp_path / "fits"
    raws.mkdir()
    good = write_fits(raws / "c.fits", {"EXPNUM": 1234, "CCDNUM": 7, "OBJECT": "it's a field"}, b"pixels")
    write_fits(raws / "d.fits", {"EXPNUM": 1234})
    assert read_fits_header(good) == {"SIMPLE": True, "EXPNUM": 1234, "CCDNUM": 7, "OBJECT": "it's a field"}
    assert FitsCamReader().read(good) == {"instrument": FITS_INSTRUMENT, "exposure": 1234, "detector": 7}
    result = cli(
        "ingest", root, raws, "--run", "FitsCam/raw", "--reader", "support.fits_camera:FitsCamReader",
        "-t", "fitsRaw", "--units", "instrument,exposure,detector", "--storage-class", "FitsBytes",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "d.fits: invalid metadata: its FITS header has no CCDNUM (the detector)" in result.output
    butler = Butler(root, collections=["FitsCam/raw"], writeable=False)
    (found,) = butler.registry.queryDatasets("fitsRaw", ["FitsCam/raw"])
    assert butler.get(found, verify=True) == good.read_bytes()
    butler.close()
    (raws / "e.fits").write_bytes(b"not fits")
    with pytest.raises(MetadataError, match="not a FITS file"):
        FitsCamReader().read(raws / "e.fits")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["{raws}", "--run", RUN], "dataset type 'raw' is not registered in this repository: give its units and storage class"),
        (["{raws}", "--run", RUN, "--units", "instrument,exposure,detektor", "--storage-class", "ArrayDict"], "--units: unknown unit 'detektor'"),
        (["{raws}", "--run", RUN, "--units", "instrument,exposure,detector", "--storage-class", "Arraydict"], "unknown storage class 'Arraydict'"),
        (["{raws}/nothing", "--run", RUN], "nothing does not exist; check the path"),
        (["--run", RUN], "give the files or directories to ingest, or --file-list FILE"),
        (["{raws}", "--run", RUN, "--index", "i.csv", "--reader", "a:B"], "give --index FILE or --reader MODULE:CLASS, not both"),
        (["{raws}", "--run", RUN, "--reader", "support.fits_camera:FitsBytesFormatter", "--units", "instrument,exposure,detector", "--storage-class", "ArrayDict"], "is not a MetadataReader subclass"),
        (["{raws}", "--run", RUN, "--reader", "support.nowhere:Reader", "--units", "instrument,exposure,detector", "--storage-class", "ArrayDict"], "cannot import metadata reader"),
    ],
)  # fmt: skip
def test_ingest_usage_errors_are_one_line(repo, tmp_path, args, expected):
    raws = tmp_path / "raws"
    raw_file(raws, 1, 0)
    result = cli("ingest", repo, *[a.format(raws=raws) for a in args])
    assert result.exit_code in (1, 2) and expected in result.output, result.output
    assert "Traceback" not in result.output and "unexpected" not in result.output


def test_a_registered_type_with_other_units_is_refused(repo, tmp_path):
    raws = tmp_path / "raws"
    raw_file(raws, 1, 0)
    assert (
        cli(
            "ingest",
            repo,
            raws,
            "--run",
            RUN,
            "--units",
            "instrument,exposure,detector",
            "--storage-class",
            "ArrayDict",
        ).exit_code
        == 0
    )
    result = cli("ingest", repo, raws, "--run", "other", "--units", "instrument,detector")
    assert result.exit_code == 2
    assert (
        "dataset type 'raw' is registered with units ['detector', 'exposure', 'instrument']" in result.output
    )


def test_progress_is_reported_for_every_file(repo, tmp_path):
    raws = tmp_path / "raws"
    files = [raw_file(raws, e, d) for e in (1, 2) for d in (0, 1)] + [raw_file(raws, 9, 9)]
    ticks = []
    butler = Butler(repo, writeable=True)
    ingest_files(butler, RAW, files, SidecarReader(), run=RUN, chunk=2, progress=ticks.append)
    butler.close()
    assert sum(ticks) == len(files)


def test_the_ingest_command_does_not_import_rich_until_it_draws_a_bar():
    code = "import sys, supertask.cli.ingest_commands, supertask.repo.ingest; print('rich' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == "False"


def test_ingested_raws_are_read_by_a_pipeline_run(repo, tmp_path):
    """The registered records are the ones the Butler reads: a get of each equals its source file."""
    raws = tmp_path / "raws"
    files = [raw_file(raws, 1, d) for d in (0, 1)]
    butler = Butler(repo, writeable=True)
    ingest_files(butler, RAW, files, SidecarReader(), run=RUN, mode="hardlink")
    for f, d in zip(files, (0, 1), strict=True):
        image = butler.get(Dataset(RAW, {"instrument": "Cam", "exposure": 1, "detector": d}, run=RUN))
        assert image["image"].tolist() == np.load(f)["image"].tolist()
    butler.close()


def test_move_across_file_systems_copies_then_removes_the_original(repo, tmp_path, monkeypatch):
    import errno

    raws = tmp_path / "raws"
    files = [raw_file(raws, 1, d) for d in (0, 1)]

    def cross_device(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(ingest_module.os, "link", cross_device)
    butler = Butler(repo, writeable=True)
    report = ingest_files(butler, RAW, files, SidecarReader(), run=RUN, mode="move")
    butler.close()
    assert report.ok and not any(f.exists() for f in files)
    assert registered(repo) == {(1, 0): 10, (1, 1): 11}


def test_the_progress_bar_advances_to_the_number_of_files_on_a_terminal(monkeypatch):
    from supertask.cli import ingest_commands

    monkeypatch.setattr(ingest_commands.sys.stderr, "isatty", lambda: True)
    progress = ingest_commands._progress(3)
    with progress as tick:
        tick(2)
        tick(1)
        assert progress._bar.tasks[0].completed == 3 and progress._bar.tasks[0].total == 3
