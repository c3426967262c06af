"""A batch job never replaces a registered file: `bps.publish` and shared-staging stage-out.

The unit tests drive `publish` on real files with a callback standing in for the registry;
the job tests run ``run_job`` with the stand-in backend (``support.toy_pipeline``), whose
``registry`` dict says what is registered and whose ``lookups`` list records every look-up.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import stat
from pathlib import Path

import pytest
from support.toy_pipeline import STANDIN_RUN as RUN
from support.toy_pipeline import StandInBackend, write_stand_in_seeds

from bps import exit_codes, publish
from bps.publish import RegisteredOutputError
from bps.run_quantum import run_job
from bps.staging import checksum_file, is_tombstone
from supertask.repo.dataid import DataId

DETECTORS = (1, 2)


def no_registry_call() -> str | None:
    raise AssertionError("the registry was consulted although the destination was free or identical")


def tmp_leftovers(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if ".bps-tmp-" in p.name]


@pytest.fixture(params=["hard-links", "no-hard-links"])
def links(request, monkeypatch) -> str:
    """Run each publishing test with hard links, and on a filesystem that refuses them (EPERM)."""
    if request.param == "no-hard-links":

        def refuse(*args, **kwargs):
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(publish.os, "link", refuse)
    return request.param


def test_publish_puts_a_new_file_in_place_without_asking_the_registry(tmp_path, links):
    src = tmp_path / "out.json"
    src.write_text('{"a": 1}')
    dest = tmp_path / "store" / "run" / "a.json"
    size, checksum = publish.publish(src, dest, no_registry_call)
    assert dest.read_text() == '{"a": 1}' and (size, checksum) == (8, checksum_file(src))
    assert tmp_leftovers(tmp_path) == []


def test_a_published_file_is_as_readable_as_one_a_plain_open_makes(tmp_path, links):
    """A collaboration reads the outputs of a batch run as those of a single-node run:
    the umask decides, not the owner-only mode of a temporary file."""
    src = tmp_path / "out.json"
    src.write_text('{"a": 1}')
    old = os.umask(0o022)
    try:
        plain = tmp_path / "plain"
        plain.write_text("")
        dest = tmp_path / "store" / "run" / "a.json"
        publish.publish(src, dest, no_registry_call)
        os.umask(0o027)
        grouped = tmp_path / "store" / "run" / "b.json"
        publish.publish(src, grouped, no_registry_call)
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644
    assert stat.S_IMODE(grouped.stat().st_mode) == 0o640


def test_publish_keeps_an_identical_file_without_asking_the_registry(tmp_path, links):
    src = tmp_path / "out.json"
    src.write_text('{"a": 1}')
    dest = tmp_path / "a.json"
    dest.write_text('{"a": 1}')
    inode = dest.stat().st_ino
    assert publish.publish(src, dest, no_registry_call) == (8, checksum_file(src))
    assert dest.stat().st_ino == inode and tmp_leftovers(tmp_path) == []


def test_publish_refuses_to_replace_a_registered_file_with_other_content(tmp_path, links):
    src = tmp_path / "out.json"
    src.write_text('{"a": 2}')
    dest = tmp_path / "a.json"
    dest.write_text('{"a": 1}')
    with pytest.raises(RegisteredOutputError, match="registered-checksum"):
        publish.publish(src, dest, lambda: "registered-checksum")
    assert dest.read_text() == '{"a": 1}' and tmp_leftovers(tmp_path) == []


def test_publish_replaces_an_unregistered_leftover_of_an_earlier_attempt(tmp_path, links):
    src = tmp_path / "out.json"
    src.write_text('{"a": 2}')
    dest = tmp_path / "a.json"
    dest.write_text('{"a": 1, "half": "of a killed attempt"}')
    asked = []
    publish.publish(src, dest, lambda: asked.append(1))  # None: not registered
    assert dest.read_text() == '{"a": 2}' and asked == [1] and tmp_leftovers(tmp_path) == []


def test_publish_replaces_nothing_when_the_registry_cannot_be_read(tmp_path, links):
    src = tmp_path / "out.json"
    src.write_text('{"a": 2}')
    dest = tmp_path / "a.json"
    dest.write_text('{"a": 1}')

    def unreachable() -> str | None:
        raise ConnectionError("registry unreachable")

    with pytest.raises(ConnectionError):
        publish.publish(src, dest, unreachable)
    assert dest.read_text() == '{"a": 1}' and tmp_leftovers(tmp_path) == []


# -- the job: shared staging through run_job -------------------------------------------------------


@pytest.fixture
def repo(tmp_path) -> Path:
    return write_stand_in_seeds(tmp_path / "repo", DETECTORS)


def job(backend: StandInBackend, repo: Path, tmp_path: Path, ids: list[int]):
    return run_job(
        "g.qgraph",
        ids,
        repo=str(repo),
        job="job",
        manifest_dir=tmp_path / "manifests",
        scratch=str(tmp_path / "scratch"),
        backend=backend,
    )


def made(repo: Path, detector: int) -> Path:
    return repo / RUN / "made" / f"detector{detector}.json"


def test_a_job_with_free_datastore_paths_never_opens_the_registry(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS)
    assert job(backend, repo, tmp_path, [0, 1, 2, 3, 4]).exit_code == exit_codes.SUCCESS
    assert backend.lookups == []


def test_a_stale_job_fails_without_replacing_a_registered_file_and_says_how_to_replan(repo, tmp_path, caplog):
    # made/detector1 was registered (by another run into the same RUN) after this graph was planned
    target = made(repo, 1)
    target.parent.mkdir(parents=True)
    target.write_text("7")
    backend = StandInBackend(repo, DETECTORS)
    backend.registry[("made", DataId(detector=1))] = checksum_file(target)
    with caplog.at_level(logging.ERROR, logger="bps.run_quantum"):
        result = job(backend, repo, tmp_path, [0, 1])
    assert result.failed == {0: exit_codes.DATA_ERROR} and result.ran == [1]
    assert result.exit_code == exit_codes.DATA_ERROR and exit_codes.DATA_ERROR in exit_codes.NO_RETRY
    assert target.read_text() == "7" and tmp_leftovers(repo) == []
    assert backend.lookups == [("made", DataId(detector=1))]
    (message,) = [r.getMessage() for r in caplog.records if "already registered" in r.getMessage()]
    assert "\n" not in message and "made {'detector': 1}" in message and repr(RUN) in message
    assert "--skip-existing-in" in message and "--extend-run" in message and "--clobber-outputs" in message


def test_a_rerun_keeps_an_identical_registered_file(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS)
    assert job(backend, repo, tmp_path, [0]).exit_code == 0
    backend.registry[("made", DataId(detector=1))] = checksum_file(made(repo, 1))
    (tmp_path / "manifests" / "job.manifest.json").unlink()  # as if the manifest were lost
    inode = made(repo, 1).stat().st_ino
    assert job(backend, repo, tmp_path, [0]).exit_code == 0
    assert made(repo, 1).stat().st_ino == inode and backend.lookups == []


def test_a_tombstone_never_replaces_a_registered_file(repo, tmp_path):
    target = made(repo, 1)
    target.parent.mkdir(parents=True)
    target.write_text("7")
    backend = StandInBackend(repo, DETECTORS, no_work={1})
    backend.registry[("made", DataId(detector=1))] = checksum_file(target)
    assert job(backend, repo, tmp_path, [0]).failed == {0: exit_codes.DATA_ERROR}
    assert target.read_text() == "7" and not is_tombstone(target)
    # not registered: the tombstone replaces a leftover as an output would
    backend.registry.clear()
    assert job(backend, repo, tmp_path, [0]).exit_code == exit_codes.SUCCESS and is_tombstone(target)


def test_a_retry_after_a_kill_mid_publish_replaces_its_own_unregistered_leftover(repo, tmp_path):
    """The first attempt is SIGKILLed right after its output got its final name (before the manifest)."""
    backend = StandInBackend(repo, DETECTORS)
    real_link = os.link
    pid = os.fork()
    if pid == 0:  # the first attempt
        try:

            def link_then_die(src, dst, *args, **kwargs):
                real_link(src, dst, *args, **kwargs)
                os.kill(os.getpid(), signal.SIGKILL)

            os.link = link_then_die
            job(backend, repo, tmp_path, [0])
        finally:
            os._exit(0)  # not reached
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert json.loads(made(repo, 1).read_text()) == 11  # published, not recorded in any manifest
    assert not (tmp_path / "manifests" / "job.manifest.json").exists()
    assert tmp_leftovers(repo)  # the killed attempt's temporary name is still there
    # the retry computes other bytes (its input changed): the unregistered leftover is replaced
    (repo / "in" / "seed" / "detector1.json").write_text("500")
    result = job(backend, repo, tmp_path, [0])
    assert result.exit_code == exit_codes.SUCCESS and result.ran == [0]
    assert json.loads(made(repo, 1).read_text()) == 501
    assert backend.lookups == [("made", DataId(detector=1))] and tmp_leftovers(repo) == []


def test_publish_of_a_file_that_is_not_what_its_record_says_publishes_nothing(tmp_path, links):
    src = tmp_path / "out.json"
    src.write_text('{"a": 2}')
    dest = tmp_path / "a.json"
    with pytest.raises(publish.SourceMismatchError, match="does not match its record"):
        publish.publish(src, dest, no_registry_call, expected=(8, "0" * 32))
    assert not dest.exists() and tmp_leftovers(tmp_path) == []
    assert publish.publish(src, dest, no_registry_call, expected=(8, checksum_file(src)))[0] == 8


def test_a_job_that_cannot_read_the_registry_replaces_nothing_and_may_be_retried(repo, tmp_path):
    target = made(repo, 1)
    target.parent.mkdir(parents=True)
    target.write_text("7")
    backend = StandInBackend(repo, DETECTORS)

    def unreachable(*args):
        raise ConnectionError("registry unreachable")

    backend.registered = unreachable
    result = job(backend, repo, tmp_path, [0])
    assert result.failed == {0: exit_codes.TEMPORARY} and exit_codes.TEMPORARY not in exit_codes.NO_RETRY
    assert target.read_text() == "7" and tmp_leftovers(repo) == []


def test_copying_into_place_removes_only_the_temporary_files_killed_attempts_left_beside_it(tmp_path):
    from bps.staging import copy_atomic, write_tombstone

    src = tmp_path / "src.json"
    src.write_text("{}")
    dest = tmp_path / "out" / "made.json"
    dest.parent.mkdir()
    left = [dest.parent / "made.json.bps-tmp-abc123", dest.parent / "made.json.bps-tmp-"]
    kept = [dest.parent / "other.json.bps-tmp-abc123", dest.parent / "made.json.keep"]
    for f in left + kept:
        f.write_text("x")
    copy_atomic(src, dest)
    assert dest.read_text() == "{}"
    assert not any(f.exists() for f in left) and all(f.exists() for f in kept)
    tomb = dest.parent / "tomb.json"
    (dest.parent / "tomb.json.bps-tmp-zz").write_text("x")
    write_tombstone(tomb, "made", {"detector": 1}, "no work")
    assert sorted(p.name for p in dest.parent.iterdir()) == sorted(
        ["made.json", "tomb.json", "other.json.bps-tmp-abc123", "made.json.keep"]
    )
