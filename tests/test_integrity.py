"""Nothing registered is ever overwritten, and a quantum registers whole, whoever dies when.

The toy pipeline's ``twin`` task writes two outputs per detector, one of them different
on every run (``noise``): a registered file that was replaced shows as a checksum
mismatch, and a quantum registered by halves as a detector with one of its two outputs.
The invariants are checked on the real registry and datastore after every rerun, after
every kill of the executor's main process (at each registration point, and at seeded
random moments) and after each resume.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest_repo import BACKENDS, _fresh_postgres_schema
from support.toy_pipeline import (
    SEED,
    SEEDS_RUN,
    ToyPipeline,
    assert_registered_files_intact,
    registered_files,
    twin_pipeline_yaml,
    twin_quanta,
    use_toy_tasks,
)

from supertask.execution import MultiprocessExecutor, run_graph
from supertask.graph.quantum_graph import QuantumGraph
from supertask.repo.butler import Butler
from supertask.repo.registry import OutputExistsError, RunConflictError

RUN = "u/test/twin"
DETECTORS = tuple(range(6))
TOY = ToyPipeline(run=RUN, detectors=DETECTORS, seed_scale=10, multiplier=2)
OUTPUTS = ("made", "noise", "total")
SUPERTASK = str(Path(sys.executable).parent / "supertask")


def make_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, multiplier: int = 2, registry: str | None = None
) -> tuple[Path, Path]:
    """A toy repository (SQLite, or the registry at URL ``registry``) and the saved twin graph over it."""
    if registry is None:
        toy = TOY.set_up(tmp_path, monkeypatch)
        return toy.repo, save_graph(tmp_path / "twin.qgraph", toy.seeds, multiplier)
    use_toy_tasks(monkeypatch)
    repo = tmp_path / "repo"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the test server's password in the URL
        Butler.create(repo, db_url=registry).close()
    butler = Butler(repo, run=SEEDS_RUN)
    try:
        seeds = [
            butler.put({"detector": d, "value": d * 10}, SEED, {"instrument": "Cam", "detector": d})
            for d in DETECTORS
        ]
    finally:
        butler.close()
    return repo, save_graph(tmp_path / "twin.qgraph", seeds, multiplier)


@pytest.fixture(params=BACKENDS)
def registry_urls(request) -> Iterator[Callable[[], str | None]]:
    """Makes a registry URL per repository: None (the repository's own SQLite file), or a
    fresh PostgreSQL schema each call (dropped after the test)."""
    if request.param == "sqlite":
        yield lambda: None
        return
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(_fresh_postgres_schema())


def save_graph(path: Path, seeds, multiplier: int = 2) -> Path:
    QuantumGraph(
        twin_quanta(seeds),
        pipelineYaml=twin_pipeline_yaml(multiplier),
        metadata={"output_run": RUN, "input_collections": [SEEDS_RUN]},
    ).save(path)
    return path


def run(repo: Path, graph: Path, **options):
    butler = Butler(repo, collections=[SEEDS_RUN])
    try:
        return run_graph(butler, QuantumGraph.load(graph), RUN, **options)
    finally:
        butler.close()


def registered(repo: Path) -> dict[tuple[str, object], tuple[str, str]]:
    """(dataset type, data ID) -> (path, registered checksum) of every output in the run."""
    return registered_files(repo, RUN, OUTPUTS)


def assert_intact(repo: Path) -> dict[tuple[str, object], tuple[str, str]]:
    """Every registered file matches its checksum, and no twin quantum is registered by halves."""
    found = assert_registered_files_intact(repo, RUN, OUTPUTS)
    made = {d["detector"] for name, d in found if name == "made"}
    noise = {d["detector"] for name, d in found if name == "noise"}
    assert made == noise, f"quanta registered by halves: made {sorted(made)}, noise {sorted(noise)}"
    return found


def test_a_nondeterministic_task_run_twice_into_one_run_never_changes_a_registered_file(
    tmp_path, monkeypatch, registry_urls
):
    repo, graph = make_repo(tmp_path, monkeypatch, registry=registry_urls())
    assert run(repo, graph).ok
    first = assert_intact(repo)
    assert len(first) == 2 * len(DETECTORS) + 1

    # the same graph again: refused before anything runs; nothing changes
    with pytest.raises(OutputExistsError, match="--skip-existing.*--clobber-outputs"):
        run(repo, graph)
    assert assert_intact(repo) == first
    # the same from the command line: one line naming the options, no traceback
    cli = subprocess.run(
        [SUPERTASK, "run", str(repo), "--qgraph", str(graph)], capture_output=True, text=True, timeout=120
    )
    assert cli.returncode == 1
    error = [line for line in cli.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "--clobber-outputs" in error[0], cli.stderr
    assert "Traceback" not in cli.stderr + cli.stdout
    assert assert_intact(repo) == first

    # skipped when asked: still nothing changes
    again = run(repo, graph, skip_existing=True)
    assert again.ok and again.total("skipped_existing") == len(DETECTORS) + 1
    assert assert_intact(repo) == first
    for option in ("--extend-run", f"--skip-existing-in={RUN}"):
        cli = subprocess.run(
            [SUPERTASK, "run", str(repo), "--qgraph", str(graph), option],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        assert assert_intact(repo) == first

    # replaced only when asked (--clobber-outputs): new registrations, each matching its file
    clobbered = run(repo, graph, clobber_outputs=True)
    assert clobbered.ok and clobbered.total("succeeded") == len(DETECTORS) + 1
    after = assert_intact(repo)
    changed = [k for k in after if after[k][1] != first[k][1]]
    assert {name for name, _ in changed} == {"noise"}  # the nondeterministic output, re-registered


def test_a_run_with_another_config_is_refused_with_the_way_out(tmp_path, monkeypatch):
    repo, graph = make_repo(tmp_path, monkeypatch)
    assert run(repo, graph).ok
    first = assert_intact(repo)
    other = save_graph(tmp_path / "x3.qgraph", _seeds(repo), multiplier=3)
    for options in ({}, {"skip_existing": True}, {"clobber_outputs": True}):
        with pytest.raises(RunConflictError, match="different pipeline.*-o NEW_RUN"):
            run(repo, other, **options)
    assert assert_intact(repo) == first
    butler = Butler(repo)
    try:
        assert "later_executions" not in butler.registry.getRunProvenance(RUN)
    finally:
        butler.close()


def _seeds(repo: Path):
    butler = Butler(repo, collections=[SEEDS_RUN])
    try:
        return list(butler.registry.queryDatasets("seed", [SEEDS_RUN]))
    finally:
        butler.close()


# -- fault injection: SIGKILL of the executor's main process ----------------------------------------


def _killed_run(repo: str, graph: str, kill_at: int, before_commit: bool, started, delay: str) -> None:
    """Run the graph in batches of one quantum; SIGKILL this process at registration ``kill_at``.

    ``before_commit``: inside the transaction, after the files got their final names (the
    moment a rename could be mistaken for a registration); else just after the commit.
    ``kill_at = 0``: never (the caller kills at a random moment).
    """
    from supertask.repo.registry import Registry

    MultiprocessExecutor.REGISTER_BATCH = 1
    os.environ["TOY_DELAY"] = delay  # seconds per twin quantum
    calls = [0]
    original = Registry.insertDatasetGroups

    def insert(self, run, groups, *, beforeCommit=None):
        calls[0] += 1
        if before_commit and calls[0] == kill_at:

            def die() -> None:
                if beforeCommit is not None:
                    beforeCommit()
                os.kill(os.getpid(), signal.SIGKILL)

            return original(self, run, groups, beforeCommit=die)
        original(self, run, groups, beforeCommit=beforeCommit)
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    register_run = Registry.registerRun

    def registered_run(self, *args, **kwargs):  # the last step before the workers start
        register_run(self, *args, **kwargs)
        started.set()

    Registry.insertDatasetGroups = insert
    Registry.registerRun = registered_run
    butler = Butler(repo, collections=[SEEDS_RUN])
    run_graph(butler, QuantumGraph.load(graph), RUN, processes=2)
    os._exit(0)


def _kill_and_resume(repo: Path, graph: Path, kill_at: int, before_commit: bool, delay: float | None) -> int:
    """Kill a run as told, check, resume, check; return how many outputs were registered at the kill."""
    ctx = multiprocessing.get_context("fork")
    started = ctx.Event()
    # killed at a random moment: six quanta of 0.1 s on two workers make a run of about 0.3 s
    slow = "0.1" if delay is not None else "0"
    child = ctx.Process(
        target=_killed_run, args=(str(repo), str(graph), kill_at, before_commit, started, slow)
    )
    child.start()
    assert started.wait(30)
    if delay is not None:
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
    child.join(60)
    assert child.exitcode is not None, "the killed run did not end"
    killed = len(assert_intact(repo))  # after the kill
    resumed = run(repo, graph, skip_existing=True)
    assert resumed.ok, resumed.failures
    found = assert_intact(repo)  # after the resume: complete as well as intact
    assert len(found) == 2 * len(DETECTORS) + 1
    return killed


@pytest.mark.slow
@pytest.mark.parametrize("before_commit", [False, True], ids=["after-commit", "before-commit"])
def test_killed_at_each_registration_point_the_repository_is_intact_and_a_resume_completes_it(
    tmp_path, monkeypatch, before_commit, registry_urls
):
    # batches of one quantum: one registration per quantum
    for k in range(1, len(DETECTORS) + 2):
        repo, graph = make_repo(tmp_path / f"k{k}", monkeypatch, registry=registry_urls())
        _kill_and_resume(repo, graph, k, before_commit, None)


def _uninterrupted_run_seconds(repo: Path, graph: Path) -> float:
    """How long the run that the random kills interrupt takes here, from its start to its end.

    The kill moments are drawn over this span rather than a fixed one, so that on a loaded machine
    (where the same run takes several times longer) they still fall between registrations.
    """
    ctx = multiprocessing.get_context("fork")
    started = ctx.Event()
    child = ctx.Process(target=_killed_run, args=(str(repo), str(graph), 0, False, started, "0.1"))
    child.start()
    assert started.wait(30)
    begin = time.monotonic()
    child.join(120)
    assert child.exitcode == 0, "the uninterrupted run failed"
    return time.monotonic() - begin


@pytest.mark.slow
def test_killed_at_random_moments_the_repository_is_intact_and_a_resume_completes_it(tmp_path, monkeypatch):
    rng = random.Random(14)
    complete = 2 * len(DETECTORS) + 1
    span = _uninterrupted_run_seconds(*make_repo(tmp_path / "calibration", monkeypatch))
    at_kill: list[int] = []
    # At least 20 kills, and more (up to 60) until 5 of them landed between registrations. The
    # span the moments are drawn from follows the runs: a run already complete at its kill means
    # the machine runs faster than when calibrated, so the span shrinks; a run killed before its
    # first registration lets it grow back. One calibration alone is not enough on a machine whose
    # load changes while the suite runs.
    while len(at_kill) < 60 and (len(at_kill) < 20 or _between(at_kill, complete) < 5):
        repo, graph = make_repo(tmp_path / f"r{len(at_kill)}", monkeypatch)
        killed = _kill_and_resume(repo, graph, 0, False, rng.uniform(0.0, 1.2 * span))
        at_kill.append(killed)
        if killed == complete:
            span *= 0.85
        elif killed == 0:
            span *= 1.1
    print("outputs registered at each kill:", at_kill)
    assert _between(at_kill, complete) >= 5, at_kill


def _between(at_kill: list[int], complete: int) -> int:
    """How many kills landed after the first registration and before the last."""
    return sum(1 for n in at_kill if 0 < n < complete)
