"""The campaign file of ``bps campaign``: which tiles, planned with which submit YAML, into which collections.

A campaign processes a data release tile by tile: one workflow per tile, each into its
own RUN ``OUTPUT/TILE``, all chained under the CHAINED collection ``OUTPUT`` that the
next tile reads. The file says only what differs between a campaign and one ``bps
submit``; everything about the workflows (pipeline, repository, input collections, workflow
system, site, resources) comes from the one submit YAML it names::

    output: u/me/drp                # the CHAINED collection; tile RUNs are u/me/drp/<tile>
    submit: bps_local.yaml          # the submit YAML of every tile
    tiles:                          # a list of named expressions ...
      - {name: tract0, where: "tract = 0"}
      - {name: tract1, where: "tract = 1"}
    # tiles: {unit: tract, values: [0, 1]}        ... or one tile per value of a unit
    # tiles: {unit: tract, where: "tract < 12"}   ... or per value the registry finds
    where: "band IN ('g', 'r')"     # optional: ANDed with every tile's expression
    max_running: 2                  # tiles running at once (default 1)
    share_units: [visit]            # tiles sharing one of these are run one after the other
    campaign_dir: campaign/drp      # state file and submit directories (default: campaign/<output>)

Every mistake is one line naming the key, the file and the fix (`CampaignError`), found
before any tile is planned.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .names import safe_name

#: keys of the submit YAML that the campaign sets for each tile
CAMPAIGN_KEYS = ("output_run", "where", "qgraph", "submit_dir", "skip_existing_in", "skip_existing")


class CampaignError(ValueError):
    """The campaign file (or its submit YAML) is wrong; the message names the key, the file and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TileEntry(_Strict):
    """One tile of a list: a name (used in its RUN and directory) and its data-ID expression."""

    name: str = Field(min_length=1)
    where: str = Field(min_length=1)


class TilesByUnit(_Strict):
    """One tile per value of a unit: the values listed, or those the registry finds for ``where``."""

    unit: str = Field(min_length=1)
    values: list[int | str] | None = None
    where: str | None = None


class CampaignFile(_Strict):
    """The keys of a campaign file (see the module docstring)."""

    output: str = Field(min_length=1)
    submit: str = Field(min_length=1)
    tiles: list[TileEntry] | TilesByUnit
    where: str = ""
    max_running: int = Field(default=1, gt=0)
    share_units: list[str] = ["visit"]
    campaign_dir: str | None = None
    poll_interval_s: float = Field(default=10.0, gt=0)


@dataclass(frozen=True)
class Tile:
    """One tile of a campaign, resolved."""

    name: str
    where: str
    run: str


@dataclass
class Campaign:
    """A campaign file read and checked: paths absolute, tiles resolved later (`resolve_tiles`)."""

    file: Path
    spec: CampaignFile
    submit_file: Path
    campaign_dir: Path

    @property
    def output(self) -> str:
        """The CHAINED collection the tiles' RUNs are chained into."""
        return self.spec.output


def load_campaign(path: str | Path) -> Campaign:
    """Read and check a campaign file and its submit YAML (no registry access).

    Raises
    ------
    CampaignError
        For a missing or unreadable file, an unknown or missing key, a wrong value, a
        tile expression that does not parse, or a submit YAML that sets what the
        campaign sets per tile.
    """
    file = Path(path).absolute()
    try:
        data = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise CampaignError(f"campaign file {file} does not exist") from None
    except IsADirectoryError:
        raise CampaignError(f"{file} is a directory: give the campaign YAML file") from None
    except yaml.YAMLError as err:
        problem = " ".join(str(err).split())
        raise CampaignError(f"campaign file {file}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise CampaignError(
            f"campaign file {file}: expected a mapping with keys output, submit, tiles; got {type(data).__name__}"
        )
    try:
        spec = CampaignFile.model_validate(data)
    except ValidationError as err:
        raise CampaignError(_explain(err, file)) from None
    _check_expressions(spec, file)
    tiles = spec.tiles
    if isinstance(tiles, list):
        if not tiles:
            raise CampaignError(f"tiles in {file}: the list is empty; give at least one {{name, where}}")
        seen: dict[str, str] = {}
        for tile in tiles:
            key = safe_name(tile.name)
            if key in seen:
                raise CampaignError(
                    f"tiles in {file}: tile names {seen[key]!r} and {tile.name!r} name the same RUN and "
                    "directory; give each tile its own name"
                )
            seen[key] = tile.name
    elif (tiles.values is None) == (tiles.where is None):
        raise CampaignError(
            f"tiles in {file}: with unit {tiles.unit!r} give either values (a list) or where "
            "(the registry finds the values), not both and not neither"
        )
    elif tiles.values is not None and not tiles.values:
        raise CampaignError(f"tiles.values in {file}: the list is empty; give at least one value")
    base = file.parent
    submit_file = (base / spec.submit).resolve()
    if not submit_file.is_file():
        raise CampaignError(f"submit in {file}: no file {submit_file}; name the submit YAML of the tiles")
    _check_submit_file(submit_file, file)
    directory = spec.campaign_dir or f"campaign/{safe_name(spec.output)}"
    return Campaign(file=file, spec=spec, submit_file=submit_file, campaign_dir=(base / directory).absolute())


def _explain(err: ValidationError, file: Path) -> str:
    """One line for the first problem pydantic found (the others usually follow from it)."""
    e = err.errors()[0]
    loc = [str(p) for p in e["loc"] if not str(p).startswith(("list[", "TilesByUnit", "TileEntry"))]
    key = ".".join(loc) or "(top level)"
    if e["type"] == "extra_forbidden":
        known = list(_known(loc[:-1]))
        close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys here: {known}"
        return f"unknown key {key!r} in {file}: {hint}"
    if e["type"] == "missing":
        return f"{key} is missing in {file}: {_MEANING.get(loc[-1], 'it is required')}"
    if loc and loc[0] == "tiles" and len(loc) <= 1:
        return (
            f"tiles in {file}: expected a list of {{name, where}} or a mapping {{unit, values}} / "
            f"{{unit, where}}; got {e.get('input')!r}"
        )
    return f"{key} in {file}: {e['msg']} (got {e.get('input')!r})"


_MEANING = {
    "output": "name the CHAINED collection of the campaign (its tiles' RUNs are OUTPUT/TILE)",
    "submit": "name the submit YAML every tile's workflow is built from",
    "tiles": "give a list of {name, where}, or {unit, values} / {unit, where}",
    "name": "each tile needs a name (its RUN is OUTPUT/NAME)",
    "where": "each tile needs its data-ID expression",
    "unit": "name the unit whose values are the tiles (e.g. tract)",
}


def _known(loc: list[str]) -> Any:
    if not loc:
        return CampaignFile.model_fields
    if loc[0] == "tiles":
        return {*TileEntry.model_fields, *TilesByUnit.model_fields}
    return {}


def _check_expressions(spec: CampaignFile, file: Path) -> None:
    """Parse every expression now: a typo in the last tile must not wait for the first tiles to finish."""
    from supertask.expr import ExpressionError, parse_expression

    texts = [("where", spec.where)]
    if isinstance(spec.tiles, list):
        texts += [(f"tiles[{t.name}].where", t.where) for t in spec.tiles]
    elif spec.tiles.where:
        texts.append(("tiles.where", spec.tiles.where))
    for key, text in texts:
        if not text:
            continue
        try:
            parse_expression(text)
        except ExpressionError as err:
            first = str(err).splitlines()[0]
            raise CampaignError(f"{key} in {file}: {text!r} is not a valid expression: {first}") from None


def _check_submit_file(submit_file: Path, campaign_file: Path) -> None:
    """The submit YAML is a valid submit configuration and leaves the per-tile keys to the campaign."""
    from .config import ConfigError, load_config

    try:
        data = yaml.safe_load(submit_file.read_text()) or {}
    except yaml.YAMLError as err:
        raise CampaignError(
            f"submit file {submit_file}: not valid YAML: {' '.join(str(err).split())}"
        ) from None
    if not isinstance(data, dict):
        raise CampaignError(f"submit file {submit_file}: expected a mapping of submit keys")
    clash = [key for key in CAMPAIGN_KEYS if data.get(key) not in (None, "", [], False)]
    if clash:
        raise CampaignError(
            f"submit file {submit_file} (named by {campaign_file}) sets {', '.join(clash)}: the campaign sets "
            "these for each tile (RUN OUTPUT/TILE, the tile's expression, its submit directory, skipping "
            "what earlier tiles did); remove them, and put a constraint shared by all tiles under where: "
            "in the campaign file"
        )
    try:
        load_config(submit_file, {"output_run": "campaign/check"})
    except ConfigError as err:
        one_line = str(err).replace(":\n  ", ": ").replace("\n  ", "; ")
        raise CampaignError(f"submit file {submit_file} (named by {campaign_file}): {one_line}") from None


def resolve_tiles(campaign: Campaign, registry: Any) -> list[Tile]:
    """The campaign's tiles in campaign order, each with its full expression and RUN.

    Raises
    ------
    CampaignError
        When ``tiles: {unit, where}`` names an unknown unit or selects no value, or a
        ``share_units`` entry is not a unit.
    """
    spec = campaign.spec
    known = set(registry.universe.units) if hasattr(registry, "universe") else None
    for unit in spec.share_units:
        if known is not None and unit not in known:
            raise CampaignError(
                f"share_units in {campaign.file}: {unit!r} is not a unit; units: {sorted(known)}"
            )
    tiles = spec.tiles
    entries: list[tuple[str, str]]
    if isinstance(tiles, list):
        entries = [(t.name, t.where) for t in tiles]
    else:
        if known is not None and tiles.unit not in known:
            close = difflib.get_close_matches(tiles.unit, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"units: {sorted(known)}"
            raise CampaignError(f"tiles.unit in {campaign.file}: {tiles.unit!r} is not a unit; {hint}")
        values = tiles.values
        if values is None:
            rows = registry.queryDataIds([tiles.unit], where=tiles.where)
            values = sorted({row[tiles.unit] for row in rows})
            if not values:
                raise CampaignError(
                    f"tiles.where in {campaign.file}: {tiles.where!r} selects no {tiles.unit}; "
                    "check the expression against the repository"
                )
        entries = [(f"{tiles.unit}{v}", f"{tiles.unit} = {v!r}") for v in values]
    out = []
    for name, where in entries:
        full = f"({where}) AND ({spec.where})" if spec.where else where
        out.append(Tile(name=safe_name(name), where=full, run=f"{spec.output}/{safe_name(name)}"))
    return out
