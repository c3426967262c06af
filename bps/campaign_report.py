"""``bps campaign report``: every tile of a campaign in one table, from its state file.

Tiles still running are asked of their workflow system first (``bps report`` of their
submit directory), so the counts are current; finished tiles show what was recorded
when they ended. Per tile: its state, RUN, the quanta planned and those left out because
earlier tiles did them, and per task label the jobs succeeded out of all (with the
failed ones); then each failure with its reason and log, and why a tile is blocked or
failed to plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .campaign import CampaignState, TileState, read_state


def refresh(state: CampaignState, directory: Path) -> None:
    """Update the running tiles' counts and failures from their workflow system (not their state)."""
    from .wms.base import WmsError, get_service

    running = [t for t in state.tiles if t.state == "running"]
    if not running:
        return
    service = get_service(state.wms)
    for tile in running:
        try:
            report = service.report(Path(tile.submit_dir))
        except (WmsError, OSError, ValueError) as err:
            tile.message = f"cannot read its state now: {err}"
            continue
        tile.counts = {label: dict(c) for label, c in report.counts.items()}
        tile.failures = [
            {"name": f.name, "label": f.label, "reason": f.reason, "log_file": f.log_file}
            for f in report.failures
        ]


def _cell(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    text = f"{counts.get('succeeded', 0)}/{total}"
    if counts.get("failed"):
        text += f" ({counts['failed']} failed)"
    return text


def summary_lines(state: CampaignState) -> tuple[list[str], list[list[str]], list[str]]:
    """The table's header and rows, and the lines that follow it (failures, messages)."""
    labels: list[str] = []
    for tile in state.tiles:
        for label in [*tile.planned, *tile.counts]:
            if label not in labels:
                labels.append(label)
    header = ["tile", "state", "RUN", "quanta", "reused", *labels]
    rows = []
    notes: list[str] = []
    for tile in state.tiles:
        planned = sum(tile.planned.values()) if tile.planned else None
        reused = sum(tile.reused.values())
        rows.append(
            [
                tile.name,
                tile.state,
                tile.run,
                "" if planned is None else str(planned),
                str(reused) if reused else "",
                *(_cell(tile.counts[label]) if label in tile.counts else "" for label in labels),
            ]
        )
        notes.extend(_notes(tile))
    return header, rows, notes


def _notes(tile: TileState) -> list[str]:
    lines = []
    if tile.reused:
        parts = ", ".join(f"{label} {n}" for label, n in tile.reused.items())
        lines.append(f"{tile.name}: not planned again, done by earlier tiles: {parts}")
    for failure in tile.failures:
        lines.append(
            f"{tile.name}: FAILED {failure['name']} ({failure['label']}): {failure['reason']}"
            + (f"; log: {failure['log_file']}" if failure.get("log_file") else "")
        )
    if tile.state in ("failed", "blocked", "empty") and tile.message:
        lines.append(f"{tile.name}: {tile.message}")
    return lines


def totals(state: CampaignState) -> dict[str, int]:
    """Tiles per state."""
    out: dict[str, int] = {}
    for tile in state.tiles:
        out[tile.state] = out.get(tile.state, 0) + 1
    return out


def campaign_report(directory: Path) -> tuple[CampaignState, Any]:
    """The campaign's state, refreshed, and a rich renderable of its table."""
    from rich.table import Table

    state = read_state(directory)
    refresh(state, directory)
    header, rows, _ = summary_lines(state)
    counts = ", ".join(f"{n} {s}" for s, n in totals(state).items())
    table = Table(title=f"campaign {state.output} ({state.wms}): {counts}")
    for name in header:
        table.add_column(name, justify="right" if name not in ("tile", "state", "RUN") else "left")
    for row in rows:
        table.add_row(*row)
    return state, table
