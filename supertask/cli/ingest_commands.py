"""``supertask register-units``, ``ingest`` and ``define-visits``: putting data in from the command line.

``register-units REPO FILE...`` inserts the instrument, its detectors and filters,
exposures, visits and their relations from YAML or CSV files
(`supertask.repo.unit_records`); ``ingest REPO PATH...`` puts raw files into the
datastore and registers them (`supertask.repo.ingest`), skipping — with the reason — any
file it cannot take, and exits 1 when it skipped any; ``define-visits REPO`` groups the
ingested exposures into visits with their sky regions (`supertask.repo.visits`).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .repo_commands import _friendly


@click.command("register-units")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--element",
    default=None,
    metavar="NAME",
    help="The unit or relation a CSV file holds (default: the file's name, e.g. exposure.csv).",
)
@_friendly
def register_units(root: str, files: tuple[str, ...], element: str | None) -> None:
    """Insert unit records (instrument, detectors, exposures, visits, ...) from YAML or CSV FILES.

    A YAML file maps unit or relation names to lists of rows; a CSV file holds one of
    them, one row per line under a header of column names. Rows already registered with
    the same values are accepted, so registering a file again does nothing.
    """
    from ..repo.butler import Butler
    from ..repo.unit_records import read_unit_records, register_unit_records

    butler = Butler(root, writeable=True)
    try:
        records: dict[str, list[dict[str, Any]]] = {}
        for path in files:  # every file is read and checked before anything is inserted
            for name, rows in read_unit_records(path, butler.universe, element).items():
                records.setdefault(name, []).extend(rows)
        counts = register_unit_records(butler.registry, records)
    finally:
        butler.close()
    for name, count in counts.items():
        click.echo(f"{name}: {count} rows")


@click.command("ingest")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--run", required=True, metavar="RUN", help="The RUN collection to ingest into, e.g. DemoCam/raw/all."
)
@click.option(
    "-t",
    "--dataset-type",
    "dataset_type",
    default="raw",
    show_default=True,
    help="The dataset type of the files.",
)
@click.option(
    "--units",
    default=None,
    metavar="U1,U2,...",
    help="Units of a new dataset type (e.g. instrument,exposure,detector); a registered type keeps its own.",
)
@click.option("--storage-class", default=None, help="Storage class of a new dataset type (e.g. ArrayDict).")
@click.option(
    "--transfer",
    type=click.Choice(["copy", "hardlink", "symlink", "move"]),
    default="copy",
    show_default=True,
    help="How files get into the datastore; move removes an original only once it is registered.",
)
@click.option(
    "--index",
    "index_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A CSV (file,<unit>,...) or YAML index giving the unit values of many files "
    "(default: a sidecar FILE.yaml or FILE.json beside each file).",
)
@click.option(
    "--reader",
    default=None,
    metavar="MODULE:CLASS",
    help="A MetadataReader subclass that reads each file's unit values (e.g. from FITS headers).",
)
@click.option(
    "--file-list",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="A file listing the files to ingest, one per line (relative to the list's directory).",
)
@click.option(
    "--pattern", default="*", show_default=True, help="Files taken under a directory (a glob on the name)."
)
@click.option("--list-skipped", is_flag=True, help="List every skipped file (default: up to 10 per reason).")
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Files per registry transaction.",
)
@_friendly
def ingest(
    root: str,
    paths: tuple[str, ...],
    run: str,
    dataset_type: str,
    units: str | None,
    storage_class: str | None,
    transfer: str,
    index_file: str | None,
    reader: str | None,
    file_list: str | None,
    pattern: str,
    list_skipped: bool,
    chunk: int,
) -> None:
    """Put files (PATHS: files and directories, and/or --file-list) into the repository at ROOT.

    Each file's unit values come from its sidecar, an index or a metadata reader. A file
    that is already ingested, lacks metadata, has invalid metadata or names unregistered
    units is skipped with the reason; the others are ingested. Exit status 1 if any file
    was skipped.
    """
    from ..repo.butler import Butler
    from ..repo.ingest import find_files, ingest_files, reader_from_spec
    from ..repo.metadata import IndexReader, SidecarReader

    if index_file and reader:
        raise click.UsageError("give --index FILE or --reader MODULE:CLASS, not both")
    if not paths and not file_list:
        raise click.UsageError("give the files or directories to ingest, or --file-list FILE")
    try:
        files = find_files(paths, pattern, file_list)
    except OSError as err:
        raise click.ClickException(
            str(err) if isinstance(err, FileNotFoundError) else f"cannot list files: {err}"
        ) from None
    if index_file:
        metadata_reader: Any = IndexReader(index_file)
    elif reader:
        metadata_reader = reader_from_spec(reader)
    else:
        metadata_reader = SidecarReader()
    butler = Butler(root, writeable=True)
    try:
        datasetType = _dataset_type(butler, dataset_type, units, storage_class)
        with _progress(len(files)) as tick:
            report = ingest_files(
                butler,
                datasetType,
                files,
                metadata_reader,
                run=run,
                mode=transfer,
                chunk=chunk,
                progress=tick,
            )
    finally:
        butler.close()
    for line in report.lines(examples=len(report.skipped) if list_skipped else 10):
        click.echo(line)
    if not report.ok:
        sys.exit(1)


def _dataset_type(butler: Any, name: str, units: str | None, storage_class: str | None) -> Any:
    """The registered dataset type ``name``, or a new one from ``--units`` and ``--storage-class``."""
    from ..repo.dataset import DatasetType
    from ..repo.formatters import get_formatter

    try:
        registered = butler.registry.getDatasetType(name)
    except KeyError:
        registered = None
    if registered is None:
        if not units or not storage_class:
            raise click.UsageError(
                f"dataset type {name!r} is not registered in this repository: give its units and storage class "
                "(e.g. --units instrument,exposure,detector --storage-class ArrayDict)"
            )
        get_formatter(storage_class)  # an unknown storage class: KeyError naming the known ones
        unit_names = tuple(u.strip() for u in units.split(",") if u.strip())
        for unit in unit_names:
            if unit not in butler.universe.units:
                raise click.UsageError(
                    f"--units: unknown unit {unit!r}; units of this repository: {', '.join(butler.universe.units)}"
                )
        return DatasetType(name, unit_names, storage_class)
    asked = DatasetType(
        name,
        tuple(u.strip() for u in units.split(",")) if units else registered.units,
        storage_class or registered.storageClass,
    )
    if asked != registered:
        raise click.UsageError(
            f"dataset type {name!r} is registered with units {list(registered.units)} and storage class "
            f"{registered.storageClass}; drop --units/--storage-class or ingest under another name"
        )
    return registered


@click.command("define-visits")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--instrument", default=None, metavar="NAME", help="The instrument (default: the repository's only one)."
)
@click.option(
    "--collections",
    default=None,
    metavar="C1,C2",
    help="Collections holding the raws (default: INSTRUMENT/raw/all).",
)
@click.option(
    "-t", "--dataset-type", "dataset_type", default="raw", show_default=True, help="The raws' dataset type."
)
@click.option(
    "--grouping",
    type=click.Choice(["one-to-one", "snaps"]),
    default="one-to-one",
    show_default=True,
    help="one-to-one: each exposure is a visit with its id; snaps: consecutive exposures of one "
    "night, filter and target (consecutive seq_num, at most --max-gap apart) form one visit.",
)
@click.option(
    "--max-gap",
    "max_gap_s",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Largest gap between two snaps of a visit, seconds.",
)
@click.option(
    "--regions",
    default=None,
    metavar="MODULE:CLASS",
    help="The instrument's RegionReader, which reads each raw's sky box (e.g. demo_drp.visits:DemoCamRegions); "
    "without it the visits get no regions and overlap no tract or patch.",
)
@_friendly
def define_visits(
    root: str,
    instrument: str | None,
    collections: str | None,
    dataset_type: str,
    grouping: str,
    max_gap_s: float,
    regions: str | None,
) -> None:
    """Group the ingested exposures at ROOT into visits and record each visit-detector's sky region.

    Exposures already in visits are left alone, so running it again defines only what
    is new (and says so when nothing is). Exposures whose observation type is not
    science are skipped and listed.
    """
    from ..repo.butler import Butler
    from ..repo.visits import define_visits as define
    from ..repo.visits import region_reader_from_spec

    reader = region_reader_from_spec(regions) if regions else None
    butler = Butler(root, writeable=True)
    try:
        names = [c.strip() for c in collections.split(",") if c.strip()] if collections else None
        report = define(
            butler,
            instrument,
            collections=names,
            dataset_type=dataset_type,
            grouping=grouping,
            max_gap_s=max_gap_s,
            region_reader=reader,
        )
    finally:
        butler.close()
    for line in report.lines():
        click.echo(line)


class _progress:
    """A progress bar on a terminal (rich, imported only then); nothing otherwise."""

    def __init__(self, total: int):
        self.total = total
        self._bar: Any = None

    def __enter__(self) -> Any:
        if not sys.stderr.isatty() or self.total < 2:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("[bold]ingest"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
        self._bar.__enter__()
        task = self._bar.add_task("ingest", total=self.total)
        bar = self._bar
        return lambda n: bar.advance(task, n)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
