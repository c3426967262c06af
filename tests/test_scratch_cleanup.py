"""A killed batch job's scratch directory is removed by the next job; a live job's never is."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bps.staging import _owner_identity, make_scratch, remove_stale_scratch

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc")

_KILLED_JOB = """
import os, signal, sys
from bps.staging import make_scratch
path = make_scratch(sys.argv[1], "calibrate_42")
(path / "in").mkdir()
(path / "in" / "raw.fits").write_bytes(b"x" * 1000)
print(path, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_next_job_removes_the_scratch_of_a_killed_one(tmp_path):
    killed = []
    for _ in range(3):
        job = subprocess.run(
            [sys.executable, "-c", _KILLED_JOB, str(tmp_path)], capture_output=True, text=True, timeout=60
        )
        assert job.returncode == -signal.SIGKILL
        killed.append(Path(job.stdout.strip()))
    # each job started removed the directory of the one killed before it
    assert [p.exists() for p in killed] == [False, False, True]
    mine = make_scratch(str(tmp_path), "next_job")
    assert not [p for p in killed if p.exists()], "scratch of killed jobs left behind"
    assert mine.is_dir()


def test_a_live_job_another_host_and_untagged_directories_are_never_removed(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host, boot, pid, start = _owner_identity(live.pid)
        keep = [
            tmp_path / f"bps-live~{host}~{boot}~{pid}~{start}~abc",
            tmp_path / f"bps-other~elsewhere~{boot}~999999~1~abc",  # another machine: not ours to judge
            tmp_path / "bps-old-style-abc123",  # made by an older version: owner unknown
            tmp_path / "not-bps~x~y~z~w~v",
        ]
        gone = [
            tmp_path / f"bps-reused~{host}~{boot}~{pid}~{int(start) + 1}~abc",  # same pid, another process
            tmp_path / f"bps-rebooted~{host}~000000000000~{pid}~{start}~abc",  # an earlier boot
        ]
        for p in keep + gone:
            p.mkdir()
        removed = remove_stale_scratch(tmp_path)
        assert sorted(removed) == sorted(gone)
        assert all(p.is_dir() for p in keep)
    finally:
        live.kill()
        live.wait()
    # once the live job is dead, its directory goes too
    assert remove_stale_scratch(tmp_path) == [keep[0]]
