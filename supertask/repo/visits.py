"""Defining visits: ingested exposures grouped into visits, with each detector's sky box.

`define_visits` (``supertask define-visits``) does what the demo generator and the
reference's ``butler define-visits`` do after raws are ingested:

- takes the exposures of one instrument that have a raw in the given collections and
  are not in a visit yet (``visit_definition``), of observation type ``science`` (or none
  recorded); others are reported, not defined;
- groups them (`GROUPINGS`): ``one-to-one`` makes each exposure a visit with the same id;
  ``snaps`` puts consecutive exposures (same night, filter and target, consecutive
  ``seq_num``, at most ``max_gap_s`` apart) into one visit numbered after its first;
- computes each visit's fields from its exposures (filter, night and target of the first,
  summed exposure time, first start and last end; ``seeing`` is unknown before processing);
- asks a `RegionReader` for the sky box of each raw and records, per visit and detector,
  the box covering its exposures (``visit_detector_region``), from which the registry
  computes the visit-detector-patch overlaps planning joins on.

Everything is read and computed before anything is written; then visits, their regions
and last their definitions are inserted (each insert accepts identical existing rows), so
an interrupted run is completed by running it again, and a second run finds nothing new.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dataid import DataId

Box = tuple[float, float, float, float]
"""``(ra_min, ra_max, dec_min, dec_max)`` in degrees; ``ra_min > ra_max`` wraps through RA 0."""

GROUPINGS: tuple[str, ...] = ("one-to-one", "snaps")


class VisitDefinitionError(ValueError):
    """Visits cannot be defined as asked; the message names the problem and the fix."""


class RegionReader:
    """The sky box of one raw file: instrument-specific (its WCS, or pointing and camera geometry).

    Subclass and implement `read`; it is constructed without arguments (a class given
    on the command line with ``--regions package.module:Class``) and called once per raw.
    """

    def read(self, path: Path, dataId: Mapping[str, Any]) -> Box:
        """``(ra_min, ra_max, dec_min, dec_max)`` of the raw at ``path`` with data ID ``dataId``."""
        raise NotImplementedError


@dataclass
class VisitReport:
    """What `define_visits` did, for the command's summary."""

    instrument: str
    visits: int = 0
    exposures: int = 0
    regions: int = 0
    already: int = 0
    #: reason -> exposure ids not defined for it
    skipped: dict[str, list[int]] = field(default_factory=dict)
    without_regions: bool = False

    def lines(self) -> list[str]:
        out = []
        if self.visits:
            out.append(
                f"defined {self.visits} visits of {self.instrument} from {self.exposures} exposures"
                + (f", {self.regions} visit-detector regions" if self.regions else "")
            )
        else:
            out.append(
                f"nothing new to define: all {self.already} exposures of {self.instrument} with raws are in visits"
                if self.already
                else f"nothing to define for {self.instrument}"
            )
        if self.visits and self.already:
            out.append(f"{self.already} exposures were in visits already")
        for reason, ids in sorted(self.skipped.items()):
            shown = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
            out.append(f"skipped {len(ids)} exposures ({reason}): {shown}")
        if self.without_regions and self.visits:
            out.append(
                "the visits have no sky regions, so they overlap no tract or patch: give --regions "
                "MODULE:CLASS (the instrument's RegionReader) when defining them"
            )
        return out


def region_reader_from_spec(spec: str) -> RegionReader:
    """A `RegionReader` from ``package.module:Class``, constructed without arguments."""
    from ..config import import_class

    try:
        cls = import_class(spec.replace(":", "."), what="region reader")
    except ImportError as err:
        raise VisitDefinitionError(str(err)) from None
    if not issubclass(cls, RegionReader):
        raise VisitDefinitionError(
            f"{spec} is not a RegionReader subclass; subclass supertask.repo.visits.RegionReader and "
            "implement read(path, dataId) -> (ra_min, ra_max, dec_min, dec_max)"
        )
    return cls()


def group_exposures(
    exposures: Mapping[int, Mapping[str, Any]], grouping: str = "one-to-one", max_gap_s: float = 10.0
) -> dict[int, list[int]]:
    """``{visit id: [exposure ids]}`` of ``exposures`` (``{exposure id: record}``), by ``grouping``."""
    if grouping == "one-to-one":
        return {e: [e] for e in sorted(exposures)}
    if grouping != "snaps":
        raise VisitDefinitionError(f"unknown grouping {grouping!r}; use one of {', '.join(GROUPINGS)}")

    def key(e: int) -> tuple[Any, ...]:
        r = exposures[e]
        return (r.get("day_obs") or 0, r.get("seq_num") if r.get("seq_num") is not None else e, e)

    groups: dict[int, list[int]] = {}
    previous: int | None = None
    for e in sorted(exposures, key=key):
        r = exposures[e]
        if previous is not None and _continues(exposures[previous], r, max_gap_s):
            groups[next(reversed(groups))].append(e)
        else:
            groups[e] = [e]
        previous = e
    return groups


def _continues(before: Mapping[str, Any], after: Mapping[str, Any], max_gap_s: float) -> bool:
    """``after`` is the next snap of ``before``'s visit."""
    same = all(before.get(k) == after.get(k) for k in ("day_obs", "physical_filter", "target_name"))
    seq_a, seq_b = before.get("seq_num"), after.get("seq_num")
    consecutive = seq_a is not None and seq_b is not None and seq_b == seq_a + 1
    end, start = before.get("mjd_end"), after.get("mjd_begin")
    close = end is not None and start is not None and (start - end) * 86400.0 <= max_gap_s
    return same and consecutive and close


def visit_record(instrument: str, visit: int, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The visit row made of its exposures' records (in time order)."""
    first = records[0]
    filters = {r.get("physical_filter") for r in records}
    if len(filters) > 1:
        raise VisitDefinitionError(
            f"visit {visit} would join exposures taken through different filters {sorted(map(str, filters))}; "
            "use --grouping one-to-one"
        )
    times: list[float | None] = [r.get("exposure_time") for r in records]
    begins = [r["mjd_begin"] for r in records if r.get("mjd_begin") is not None]
    ends = [r["mjd_end"] for r in records if r.get("mjd_end") is not None]
    return {
        "instrument": instrument,
        "visit": visit,
        "physical_filter": first.get("physical_filter"),
        "day_obs": first.get("day_obs"),
        "exposure_time": None
        if any(t is None for t in times)
        else float(sum(t for t in times if t is not None)),
        "mjd_begin": min(begins) if begins else None,
        "mjd_end": max(ends) if ends else None,
        "target_name": first.get("target_name"),
    }


def union_box(boxes: Sequence[Box]) -> Box:
    """The box covering ``boxes`` (one visit-detector's exposures); RA wrapping through 0 is kept."""
    if len(boxes) == 1:
        return boxes[0]
    if any(b[0] > b[1] for b in boxes) or (
        max(b[1] for b in boxes) - min(b[0] for b in boxes) > 180.0
    ):  # near RA 0: compare in [-180, 180)
        lows = [b[0] - 360.0 if b[0] >= 180.0 else b[0] for b in boxes]
        highs = [b[1] - 360.0 if b[1] >= 180.0 else b[1] for b in boxes]
        ra_min, ra_max = min(lows) % 360.0, max(highs) % 360.0
    else:
        ra_min, ra_max = min(b[0] for b in boxes), max(b[1] for b in boxes)
    return (ra_min, ra_max, min(b[2] for b in boxes), max(b[3] for b in boxes))


def define_visits(
    butler: Any,
    instrument: str | None = None,
    *,
    collections: Sequence[str] | None = None,
    dataset_type: str = "raw",
    grouping: str = "one-to-one",
    max_gap_s: float = 10.0,
    region_reader: RegionReader | None = None,
    progress: Callable[[int], None] | None = None,
) -> VisitReport:
    """Define visits of the exposures of ``instrument`` that have a ``dataset_type`` in ``collections``.

    Parameters
    ----------
    butler : `~supertask.repo.butler.Butler`
        A writeable butler on the repository.
    instrument : `str`, optional
        The instrument; may be omitted when the repository has one.
    collections : sequence of `str`, optional
        Where the raws are; default ``<instrument>/raw/all``.
    dataset_type : `str`
        The raws' dataset type.
    grouping : `str`
        One of `GROUPINGS`.
    max_gap_s : `float`
        Largest gap between two snaps of one visit (``snaps`` grouping).
    region_reader : `RegionReader`, optional
        Reads each raw's sky box; without one the visits get no regions (and overlap no patch).
    progress : callable, optional
        Called with the number of raws whose region was just read.

    Raises
    ------
    VisitDefinitionError
        Naming the problem and the fix (no instrument, no raws, an unreadable region...).
    """
    registry = butler.registry
    if grouping not in GROUPINGS:
        raise VisitDefinitionError(f"unknown grouping {grouping!r}; use one of {', '.join(GROUPINGS)}")
    instrument = _instrument(registry, instrument)
    collections = list(collections or [f"{instrument}/raw/all"])
    try:
        registry.getDatasetType(dataset_type)
    except KeyError:
        raise VisitDefinitionError(
            f"dataset type {dataset_type!r} is not registered: ingest the raws first "
            f"(supertask ingest REPO DIR --run {instrument}/raw/all)"
        ) from None
    bind = {"instrument": instrument}
    where = "instrument = :instrument"
    with_raws = registry.queryDataIds(
        ["exposure"], where=where, bind=bind, datasets=[dataset_type], collections=collections
    )
    if not with_raws:
        raise VisitDefinitionError(
            f"no exposure of {instrument} has a {dataset_type!r} dataset in {collections}: ingest the raws first "
            f"(supertask ingest REPO DIR --run {collections[0]}) or name their collection with --collections"
        )
    defined = {d["exposure"] for d in registry.queryDataIds(["exposure", "visit"], where=where, bind=bind)}
    report = VisitReport(instrument=instrument, without_regions=region_reader is None)
    records = registry.getUnitRecords("exposure", with_raws)
    candidates: dict[int, dict[str, Any]] = {}
    for dataId in sorted(with_raws, key=lambda d: d["exposure"]):
        exposure = dataId["exposure"]
        record = records.get(DataId(instrument=instrument, exposure=exposure), {})
        kind = record.get("observation_type")
        if exposure in defined:
            report.already += 1
        elif kind not in (None, "", "science"):
            report.skipped.setdefault(f"observation_type {kind!r}, not science", []).append(exposure)
        else:
            candidates[exposure] = record
    if not candidates:
        return report
    groups = group_exposures(candidates, grouping, max_gap_s)
    visit_max = _visit_max(registry, instrument)
    too_big = [v for v in groups if visit_max is not None and v >= visit_max]
    if too_big:
        raise VisitDefinitionError(
            f"visit ids {too_big[:5]} are not below the instrument's visit_max {visit_max}: raise visit_max in "
            f"the {instrument} instrument record (supertask register-units) or number the exposures below it"
        )
    visits = [visit_record(instrument, v, [candidates[e] for e in members]) for v, members in groups.items()]
    regions = _regions(butler, instrument, groups, dataset_type, collections, region_reader, progress)
    definitions = [
        {"instrument": instrument, "exposure": e, "visit": v}
        for v, members in groups.items()
        for e in members
    ]
    registry.insertUnits("visit", visits)
    if regions:
        registry.insertUnits("visit_detector_region", regions)
    registry.insertUnits("visit_definition", definitions)  # last: it marks the exposures as done
    report.visits, report.exposures, report.regions = len(visits), len(definitions), len(regions)
    return report


def _instrument(registry: Any, name: str | None) -> str:
    from ..config.errors import suggest

    known = [str(i) for i in registry.unitKeyValues("instrument")]
    if not known:
        raise VisitDefinitionError(
            "no instrument is registered in this repository: register it, its detectors and exposures first "
            "(supertask register-units REPO units.yaml)"
        )
    if name is None:
        if len(known) > 1:
            raise VisitDefinitionError(
                f"this repository has instruments {', '.join(sorted(known))}: choose one with --instrument"
            )
        return known[0]
    if name not in known:
        raise VisitDefinitionError(
            f"unknown instrument {name!r}; registered: {', '.join(sorted(known))}.{suggest(name, known)}"
        )
    return name


def _visit_max(registry: Any, instrument: str) -> int | None:
    records: dict[DataId, dict[str, Any]] = registry.getUnitRecords(
        "instrument", [DataId(instrument=instrument)]
    )
    value = next(iter(records.values()), {}).get("visit_max")
    return int(value) if value is not None else None


def _regions(
    butler: Any,
    instrument: str,
    groups: Mapping[int, list[int]],
    dataset_type: str,
    collections: Sequence[str],
    reader: RegionReader | None,
    progress: Callable[[int], None] | None,
) -> list[dict[str, Any]]:
    """One ``visit_detector_region`` row per visit and detector with a raw: the box covering its exposures."""
    if reader is None:
        return []
    registry = butler.registry
    visit_of = {e: v for v, members in groups.items() for e in members}
    raws = registry.queryDatasets(
        dataset_type, collections, where="instrument = :instrument", bind={"instrument": instrument}
    )
    raws = [d for d in raws if d.dataId.get("exposure") in visit_of]
    locations = registry.getDatasetRecords(raws)
    boxes: dict[tuple[int, int], list[Box]] = {}
    root = Path(str(butler.datastore.root))
    for raw in sorted(raws, key=lambda d: (d.dataId["exposure"], d.dataId.get("detector", 0))):
        if "detector" not in raw.dataId:
            raise VisitDefinitionError(
                f"dataset type {dataset_type!r} has no detector; visit regions are per detector"
            )
        path = root / locations[raw.id][0] if raw.id in locations else None
        if path is None:
            continue
        try:
            values = tuple(float(v) for v in reader.read(path, dict(raw.dataId)))
        except Exception as err:  # any reader failure names the file; nothing is written
            raise VisitDefinitionError(
                f"cannot read the sky region of {path} (exposure {raw.dataId['exposure']}, detector "
                f"{raw.dataId['detector']}) with {type(reader).__name__}: {err}"
            ) from None
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise VisitDefinitionError(
                f"{type(reader).__name__} gave {values} for {path}: expected four finite numbers "
                "(ra_min, ra_max, dec_min, dec_max) in degrees"
            )
        key = (visit_of[raw.dataId["exposure"]], raw.dataId["detector"])
        boxes.setdefault(key, []).append((values[0], values[1], values[2], values[3]))
        if progress is not None:
            progress(1)
    rows = []
    for (visit, detector), found in sorted(boxes.items()):
        ra_min, ra_max, dec_min, dec_max = union_box(found)
        rows.append(
            {
                "instrument": instrument,
                "visit": visit,
                "detector": detector,
                "ra_min": ra_min,
                "ra_max": ra_max,
                "dec_min": dec_min,
                "dec_max": dec_max,
            }
        )
    return rows
