"""``workflow.json`` written by a forked child while `bps prepare` writes the engine's files.

`bps.forked_write` runs one write in a child made with `os.fork` and another in the parent;
the submit directory must be the sequential one byte for byte, and every failure (the
child's exception, the child killed, the parent's own failure) must end as the sequential
path ends: the same error, nothing half-written, no child left running.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.toy_pipeline import TASKS_PYTHONPATH, prepare, submit_dir_of
from test_bps_workflow_stream import TOY, _tree

from bps import forked_write
from bps import prepare as prepare_mod
from bps.cli import main as bps_main
from bps.forked_write import SEQUENTIAL_ENV, ChildUsage, fork_is_safe, write_alongside
from bps.prepare import PrepareError
from bps.wms.htcondor import service as htcondor_service
from bps.wms.pegasus import service as pegasus_service

needs_fork = pytest.mark.skipif(
    not hasattr(os, "fork") or threading.active_count() > 1,
    reason="forking needs POSIX and a single-threaded test process",
)


def _unexpected(how: str) -> BaseException:
    raise AssertionError(f"the child ended unexpectedly: {how}")


def _gone(pid: int) -> bool:
    """Whether ``pid`` was reaped (neither running nor a zombie of ours)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@needs_fork
def test_the_child_writes_in_another_process_while_the_parent_works(tmp_path, monkeypatch):
    monkeypatch.delenv(SEQUENTIAL_ENV, raising=False)
    assert fork_is_safe()
    usage: list[ChildUsage] = []
    result = write_alongside(
        lambda: (tmp_path / "child").write_text(str(os.getpid())),
        lambda: os.getpid(),
        discard=lambda: pytest.fail("nothing to discard"),
        killed_error=_unexpected,
        usage=usage,
    )
    child = int((tmp_path / "child").read_text())
    assert result == os.getpid() and child != os.getpid()
    assert [u.pid for u in usage] == [child] and usage[0].peak_rss_bytes > 0 and _gone(child)
    assert gc.get_freeze_count() == 0, "the parent's objects were left frozen"


def test_the_switch_writes_one_after_the_other_in_this_process(tmp_path, monkeypatch):
    monkeypatch.setenv(SEQUENTIAL_ENV, "1")
    assert not fork_is_safe()
    order: list[tuple[str, int]] = []
    usage: list[ChildUsage] = []
    write_alongside(
        lambda: order.append(("child", os.getpid())),
        lambda: order.append(("parent", os.getpid())),
        discard=lambda: None,
        killed_error=_unexpected,
        usage=usage,
    )
    assert order == [("child", os.getpid()), ("parent", os.getpid())] and usage == []


def test_another_thread_alive_means_no_fork(monkeypatch):
    monkeypatch.delenv(SEQUENTIAL_ENV, raising=False)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not fork_is_safe()
    finally:
        stop.set()
        thread.join()


@needs_fork
def test_the_childs_exception_is_raised_in_the_parent_with_its_type_and_message(tmp_path, monkeypatch):
    monkeypatch.delenv(SEQUENTIAL_ENV, raising=False)
    discarded: list[int] = []

    def fail() -> None:
        raise PrepareError("cannot write workflow.json: No space left on device")

    with pytest.raises(PrepareError, match=r"^cannot write workflow.json: No space left on device$"):
        write_alongside(fail, lambda: None, discard=lambda: discarded.append(1), killed_error=_unexpected)
    assert discarded == [1]


@needs_fork
def test_an_exception_that_cannot_be_pickled_still_reaches_the_parent(monkeypatch):
    monkeypatch.delenv(SEQUENTIAL_ENV, raising=False)

    class Odd(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"{a}/{b}")

    def fail() -> None:
        raise Odd(1, 2)

    with pytest.raises(RuntimeError, match=r"^Odd: 1/2$"):
        write_alongside(fail, lambda: None, discard=lambda: None, killed_error=_unexpected)


@needs_fork
def test_a_killed_child_is_the_given_error_and_its_temporary_is_discarded(tmp_path, monkeypatch):
    monkeypatch.delenv(SEQUENTIAL_ENV, raising=False)
    stray = tmp_path / "workflow.json.tmp-abc"

    def die() -> None:
        stray.write_text("half")
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(PrepareError, match=r"^child killed by signal 9$"):
        write_alongside(
            die,
            lambda: None,
            discard=lambda: stray.unlink(),
            killed_error=lambda how: PrepareError(f"child {how}"),
        )
    assert list(tmp_path.iterdir()) == []


@needs_fork
def test_the_parents_failure_kills_and_reaps_the_child(tmp_path, monkeypatch):
    monkeypatch.delenv(SEQUENTIAL_ENV, raising=False)
    started = tmp_path / "started"
    stray = tmp_path / "workflow.json.tmp-abc"

    def slow() -> None:
        stray.write_text("half")
        started.write_text(str(os.getpid()))
        time.sleep(60)

    def parent_fails() -> None:
        while not started.exists():
            time.sleep(0.01)
        raise ValueError("the DAG could not be written")

    begin = time.monotonic()
    with pytest.raises(ValueError, match="the DAG could not be written"):
        write_alongside(slow, parent_fails, discard=lambda: stray.unlink(), killed_error=_unexpected)
    assert time.monotonic() - begin < 30, "the parent waited for the child instead of killing it"
    assert _gone(int(started.read_text()))
    assert not stray.exists() and gc.get_freeze_count() == 0


# -- bps prepare, end to end -------------------------------------------------------------------


def _toy(tmp_path, monkeypatch, wms: str, site: str):
    settings: dict[str, object] = (
        {"condor": {"skip_checks": ["tmp_node_log", "job_user"]}} if wms == "htcondor" else {}
    )
    settings["environment"] = {"PYTHONPATH": TASKS_PYTHONPATH}
    return TOY.set_up(tmp_path, monkeypatch, wms=wms, compute_site=site, site=settings)


def _forks(monkeypatch) -> list[ChildUsage]:
    """Record the children `bps.prepare` forks."""
    usage: list[ChildUsage] = []
    real = forked_write.write_alongside
    monkeypatch.setattr(prepare_mod, "write_alongside", lambda *a, **kw: real(*a, **kw, usage=usage))
    return usage


@needs_fork
@pytest.mark.parametrize(("wms", "site"), [("htcondor", "htcondor_shared"), ("pegasus", "pegasus_sharedfs")])
@pytest.mark.parametrize("clustered", [False, True])
def test_prepare_writes_the_same_submit_directory_forked_as_sequentially(
    tmp_path, monkeypatch, wms, site, clustered
):
    toy = _toy(tmp_path, monkeypatch, wms, site)
    extra = {"clustering": {"clusters": [{"name": "all", "labels": [TOY.make]}]}} if clustered else {}
    config = toy.submit_yaml("same", **extra)
    submit_dir = submit_dir_of(config)
    monkeypatch.setenv(SEQUENTIAL_ENV, "1")
    prepare(config)
    sequential = _tree(submit_dir)
    submit_dir.rename(submit_dir.with_name("sequential"))
    monkeypatch.delenv(SEQUENTIAL_ENV)
    forks = _forks(monkeypatch)
    for service in (htcondor_service, pegasus_service):  # the child writes it, the parent must not
        monkeypatch.setattr(service, "save_workflow", lambda *a: pytest.fail("workflow.json written twice"))
    prepare(config)
    assert len(forks) == 1, "workflow.json was not written by a child"
    forked = _tree(submit_dir)
    assert "workflow.json" in forked
    assert sorted(forked) == sorted(sequential)
    assert [name for name in sequential if forked[name] != sequential[name]] == []


@needs_fork
@pytest.mark.parametrize("sequential", [True, False])
def test_a_workflow_json_that_cannot_be_written_is_one_line_and_leaves_nothing_half_written(
    tmp_path, monkeypatch, sequential
):
    toy = _toy(tmp_path, monkeypatch, "htcondor", "htcondor_shared")
    config = toy.submit_yaml("full")
    _choose_path(monkeypatch, sequential)
    forks = _forks(monkeypatch)
    real = prepare_mod.save_workflow

    def disk_full(workflow, path):
        real(workflow, Path(str(path) + ".tmp-fake"))  # a temporary the failing writer leaves behind
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(prepare_mod, "save_workflow", disk_full)
    result = CliRunner().invoke(bps_main, ["prepare", str(config)])
    submit_dir = submit_dir_of(config)
    assert result.exit_code == 1
    assert result.output == (
        f"bps: error: cannot write {submit_dir / 'workflow.json'}: No space left on device; "
        "free space in or choose another submit_dir\n"
    )
    assert len(forks) == (0 if sequential else 1)
    assert [p.name for p in submit_dir.iterdir() if p.name.startswith("workflow.json")] == []


def test_the_parents_failure_in_the_sequential_path_discards_what_the_child_wrote(tmp_path, monkeypatch):
    monkeypatch.setenv(SEQUENTIAL_ENV, "1")
    written = tmp_path / "workflow.json"

    def parent_fails() -> None:
        raise ValueError("the DAG could not be written")

    with pytest.raises(ValueError, match="the DAG could not be written"):
        write_alongside(
            lambda: written.write_text("{}"),
            parent_fails,
            discard=lambda: written.unlink(),
            killed_error=_unexpected,
        )
    assert not written.exists()


def _choose_path(monkeypatch, sequential: bool) -> None:
    """Make `bps.prepare` write workflow.json in one process (``sequential``) or in a forked child."""
    if sequential:
        monkeypatch.setenv(SEQUENTIAL_ENV, "1")
    else:
        monkeypatch.delenv(SEQUENTIAL_ENV, raising=False)


def _run_record(submit_dir: Path) -> str | None:
    path = submit_dir / "run_record.json"
    return path.read_text() if path.exists() else None


def _fail_after_the_engines_files(monkeypatch, tmp_path, sequential: bool) -> None:
    """Make the writing of workflow.json fail once the engine's files and run record are written."""
    engine_done = tmp_path / "engine-done"
    real_prepare = htcondor_service.HTCondorService.prepare

    def engine(self, workflow, *, save=True):
        main_file = real_prepare(self, workflow, save=save)
        engine_done.write_text("")
        return main_file

    def disk_full(workflow, path):
        if not sequential:  # the child: fail once the parent has written everything else
            deadline = time.monotonic() + 60
            while not engine_done.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(htcondor_service.HTCondorService, "prepare", engine)
    monkeypatch.setattr(prepare_mod, "save_workflow", disk_full)


@needs_fork
@pytest.mark.parametrize("sequential", [True, False])
def test_a_failed_workflow_json_leaves_no_run_record_saying_prepared(tmp_path, monkeypatch, sequential):
    toy = _toy(tmp_path, monkeypatch, "htcondor", "htcondor_shared")
    config = toy.submit_yaml("record")
    _choose_path(monkeypatch, sequential)
    _fail_after_the_engines_files(monkeypatch, tmp_path, sequential)
    result = CliRunner().invoke(bps_main, ["prepare", str(config)])
    submit_dir = submit_dir_of(config)
    assert result.exit_code == 1
    assert result.output == (
        f"bps: error: cannot write {submit_dir / 'workflow.json'}: No space left on device; "
        "free space in or choose another submit_dir\n"
    )
    assert _run_record(submit_dir) is None
    assert not (submit_dir / "workflow.json").exists()


@needs_fork
def test_the_run_record_says_prepared_only_once_workflow_json_is_written(tmp_path, monkeypatch):
    toy = _toy(tmp_path, monkeypatch, "htcondor", "htcondor_shared")
    config = toy.submit_yaml("held")
    monkeypatch.delenv(SEQUENTIAL_ENV, raising=False)
    seen: list[str | None] = []
    real_alongside = forked_write.write_alongside

    def alongside(child_write, parent_work, **kwargs):
        def parent():
            result = parent_work()
            seen.append(_run_record(submit_dir_of(config)))  # the child may still be writing
            return result

        return real_alongside(child_write, parent, **kwargs)

    monkeypatch.setattr(prepare_mod, "write_alongside", alongside)
    submit_dir = prepare(config)
    assert seen == [None]
    record = _run_record(submit_dir)
    assert record is not None and '"state": "prepared"' in record
    assert (submit_dir / "workflow.json").exists()


@needs_fork
@pytest.mark.parametrize("sequential", [True, False])
def test_an_input_file_that_cannot_be_written_is_one_line_and_leaves_nothing_prepared(
    tmp_path, monkeypatch, sequential
):
    toy = _toy(tmp_path, monkeypatch, "htcondor", "htcondor_shared")
    config = toy.submit_yaml("inputs")
    _choose_path(monkeypatch, sequential)
    real = prepare_mod.atomic_write.atomic_write_text

    def disk_full(path, text, **kwargs):
        if Path(path).parent.name == "input_checks":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, text, **kwargs)

    monkeypatch.setattr(prepare_mod.atomic_write, "atomic_write_text", disk_full)
    result = CliRunner().invoke(bps_main, ["prepare", str(config)])
    submit_dir = submit_dir_of(config)
    assert result.exit_code == 1
    assert result.output == (
        f"bps: error: cannot write {submit_dir / 'input_checks' / '000000.json'}: No space left on device; "
        "free space in or choose another submit_dir\n"
    )
    assert [p.name for p in submit_dir.iterdir() if p.name.startswith("workflow.json")] == []
    assert _run_record(submit_dir) is None
