"""The tutorial's right-sizing section (docs/tutorial.md) run for real, so that it cannot rot.

After the whole ``make demo`` (``demo_drp.main_job`` into ``demo_run``), every command of
the section's ``console`` blocks runs as printed, from the directory holding ``demo_run``,
and each output line the tutorial shows must appear, in order, in what the command
prints: with every number masked (memory figures differ between machines), while the
numbers that do not depend on the machine must be the tutorial's: jobs and quanta per
label, samples per task label, how many quanta and jobs were measured and prepared.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
SECTION = "### Memory requests from what the last run measured"
BIN = Path(sys.executable).parent
#: numbers that are the same on every machine: counts of jobs, quanta, samples
FIXED = (
    re.compile(r"of (\d+) peaks"),
    re.compile(r"peaks of (\d+) quanta"),
    re.compile(r"prepared (\d+) jobs \((\d+) labels\)"),
    re.compile(r"^│ (\w+) +│ +(\d+) │"),  # a table row's label and first count (jobs or quanta)
)


def console_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(command, the output lines shown) of each ``console`` block of the section."""
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    out = []
    for block in re.findall(r"```console\n(.*?)```", section, re.S):
        lines = block.splitlines()
        assert lines[0].startswith("$ "), block
        command = lines[0][2:]
        rest = lines[1:]
        while command.endswith("\\"):
            command = command[:-1] + rest.pop(0).strip()
        out.append((command, rest))
    return out


def masked(line: str) -> str:
    """``line`` with numbers, runs of spaces and table rules collapsed: what does not vary."""
    line = re.sub(r"\d+(\.\d+)?", "#", line)
    line = re.sub(r"[━─]+", "-", line)
    return re.sub(r"\s+", " ", line).strip()


def fixed_numbers(lines: list[str]) -> list[tuple[str, ...]]:
    return [m.groups() for line in lines for pattern in FIXED for m in [pattern.search(line)] if m]


def test_the_tutorials_right_sizing_commands_print_what_it_shows(tmp_path):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "COLUMNS": "100"}
    demo = subprocess.run(
        [sys.executable, "-m", "demo_drp.main_job", str(tmp_path / "demo_run")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    blocks = console_blocks(TUTORIAL.read_text())
    assert [c.split()[:2] for c, _ in blocks] == [["bps", "report"], ["bps", "prepare"]]
    for command, shown in blocks:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        printed = done.stdout.replace(f"{tmp_path}/", "").splitlines()  # paths as the tutorial's
        wanted = [masked(x) for x in shown if x.strip() and x.strip() != "..."]
        got = iter(masked(x) for x in printed)
        missing = [w for w in wanted if not any(w == g for g in got)]
        assert not missing, (
            f"{command}: the tutorial shows lines it no longer prints:\n"
            + "\n".join(missing)
            + "\n--- it printed:\n"
            + done.stdout
        )
        assert fixed_numbers(shown) == fixed_numbers([x for x in printed if masked(x) in wanted]), command
