"""docs/campaign.md, run as written: every file it shows is written, every command it shows is run.

The chapter's ``sh`` blocks run in order (from a directory that holds the source tree's
``examples/``, as the chapter says), its ``yaml`` blocks headed ``# PATH`` are written to
PATH, and every line of the ``text`` block after a command must appear in that command's
output (paths made relative, table borders and spacing ignored). So the chapter cannot
rot: a changed command, message or count fails here. The counts themselves are then
checked against the registry's overlaps, independently of the planner.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "docs" / "campaign.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(CHAPTER.read_text())]


def normalise(text: str, base: Path) -> str:
    text = text.replace(f"{base}/", "")
    return re.sub(r"[\s\u2500-\u257f]+", "", text)


def test_the_chapter_has_commands_files_and_outputs():
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("sh") >= 5 and kinds.count("yaml") == 2 and kinds.count("text") >= 3


def _missing_commands() -> list[str]:
    """Commands of the chapter's data steps that this checkout does not have yet."""
    from click.testing import CliRunner

    from supertask.cli.main import main as supertask_cli

    missing = []
    if CliRunner().invoke(supertask_cli, ["define-visits", "--help"]).exit_code != 0:
        missing.append("supertask define-visits")
    if "--raw-files" not in CliRunner().invoke(supertask_cli, ["demo-data", "--help"]).output:
        missing.append("supertask demo-data --raw-files")
    return missing


@pytest.mark.slow
def test_every_command_of_the_campaign_chapter_runs_as_shown(tmp_path):
    missing = _missing_commands()
    if missing:
        pytest.skip(f"the chapter's data steps need {' and '.join(missing)}, which this checkout lacks")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("BPS_SITE_CONFIG_PATH", None)
    last_output = None
    ran = 0
    for kind, body in blocks():
        if kind == "yaml":
            first = body.splitlines()[0]
            assert first.startswith("# "), f"a yaml block of the chapter names no file: {first!r}"
            path = tmp_path / first[2:].strip()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
        elif kind == "sh":
            done = subprocess.run(
                ["bash", "-e", "-c", body], cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, f"{body}\n{done.stdout}\n{done.stderr}"
            last_output = done.stdout
            ran += 1
        elif kind == "text" and last_output is not None:
            output = normalise(last_output, tmp_path)
            for line in body.splitlines():
                if normalise(line, tmp_path):
                    assert normalise(line, tmp_path) in output, f"{line!r} not in:\n{last_output}"
            last_output = None
    assert ran >= 5

    # the reuse the chapter shows follows from the overlaps: east redoes none of west's detectors
    from supertask.repo.butler import Butler

    registry = Butler(tmp_path / "campaign-demo" / "repo", collections=["DemoCam/defaults"]).registry

    def visit_detectors(where: str) -> set[tuple[int, int]]:
        rows = registry.queryDataIds(["visit", "detector", "tract", "patch"], where=where)
        return {(r["visit"], r["detector"]) for r in rows}

    west = visit_detectors("tract = 0 AND patch IN (5, 6)")
    east = visit_detectors("tract = 0 AND patch IN (9, 10)")
    tract1 = visit_detectors("tract = 1")
    from bps.campaign import read_state

    state = read_state(tmp_path / "campaign-demo" / "campaign" / "u_me_drp")
    assert [t.state for t in state.tiles] == ["succeeded"] * 3
    by_name = {t.name: t for t in state.tiles}
    assert by_name["west"].planned["isr"] == len(west) and not by_name["west"].reused
    assert by_name["east"].reused == {"isr": len(east & west), "calibrate": len(east & west)}
    assert by_name["east"].planned["isr"] == len(east - west)
    assert by_name["tract1"].planned.get("isr", 0) == len(tract1 - west - east)
    assert registry.getChain("u/me/drp") == [
        "u/me/drp/tract1",
        "u/me/drp/east",
        "u/me/drp/west",
        "DemoCam/defaults",
    ]
