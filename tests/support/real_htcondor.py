"""Files a real HTCondor 25.14 pool wrote for bps runs (``tests/data/real-htcondor/``), as submit directories.

Each scenario folder is a submit directory as bps and DAGMan left it (see its
README.md). `scenario` copies one into a temporary directory (``bps report`` writes
the run record); `cut_at` turns a copy into the directory as it was at an earlier
moment of the run, by dropping what the logs say happened later.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "real-htcondor"
#: Runs of the DAGs bps writes today (no POST script, retries in the job) on HTCondor 25.14.0.
DATA_25140 = DATA.parent / "real-htcondor-25.14.0"
_EVENT_HEAD = re.compile(r"\d{3} \(\S+\) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")


def scenario(name: str, tmp_path: Path, data: Path = DATA) -> Path:
    """A writable copy of the submit directory of scenario ``name`` (under ``data``)."""
    target = tmp_path / name
    shutil.copytree(data / name, target)
    for path in target.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    return target


def cut_event_log(path: Path, until: str) -> None:
    """Keep the events of a job event log stamped at or before ``until`` (``YYYY-MM-DD HH:MM:SS``)."""
    kept = []
    for block in path.read_text().split("...\n"):
        m = _EVENT_HEAD.match(block.lstrip("\n"))
        if m and m.group(1) <= until:
            kept.append(block.lstrip("\n") + "...\n")
    path.write_text("".join(kept))


def cut_dagman_out(path: Path, until: str) -> None:
    """Keep the lines of ``.dagman.out`` stamped at or before ``until`` (``YYYY-MM-DD HH:MM:SS``)."""
    y, mo, d = until[:10].split("-")
    stamp = f"{mo}/{d}/{y[2:]} {until[11:]}"
    path.write_text("".join(line for line in path.read_text().splitlines(True) if line[:17] <= stamp))


def update_record(submit_dir: Path, drop: tuple[str, ...] = (), **fields: object) -> dict:
    path = submit_dir / "run_record.json"
    record = json.loads(path.read_text())
    for key in drop:
        record.pop(key, None)
    record.update(fields)
    path.write_text(json.dumps(record))
    return record
