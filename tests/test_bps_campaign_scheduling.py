"""The campaign driver's rules, with the workflow system and the registry stood in for.

Tiles sharing visits run one after the other in campaign order, others side by side up to
``max_running``; a tile waiting for a failed one is blocked; running the campaign again
skips finished tiles, restarts failed ones (not planning them again) and then the blocked.
"""

from __future__ import annotations

from pathlib import Path

from bps.campaign import CampaignDriver, CampaignState, TileState, order_tiles, read_state


def test_tiles_sharing_a_visit_wait_for_the_earlier_ones_only():
    shared = {"a": {(1,), (2,)}, "b": {(3,)}, "c": {(2,), (3,)}, "d": {(9,)}}
    assert order_tiles(shared) == {"a": [], "b": [], "c": ["a", "b"], "d": []}


class ScriptedDriver(CampaignDriver):
    """A driver whose tiles finish after ``polls`` looks with the scripted outcome."""

    def __init__(
        self, directory: Path, after: dict[str, list[str]], outcomes: dict[str, list[str]], max_running: int
    ):
        self.directory = directory
        self.after = after
        self.outcomes = outcomes  # per tile, the outcome of each submission in turn
        self.max_running = max_running
        self.poll_interval_s = 0.0
        self.out = self.lines = []
        self.out = self.lines.append
        self.running_now: set[str] = set()
        self.most_at_once = 0
        self.events: list[str] = []
        self.polls: dict[str, int] = {}
        self.campaign = type("C", (), {"spec": type("S", (), {"share_units": ["visit"]})()})()

    def load_state(self) -> CampaignState:
        if (self.directory / "campaign_state.json").exists():
            return read_state(self.directory)
        tiles = [
            TileState(name=n, where=f"t = {n}", run=f"c/{n}", submit_dir=str(self.directory / n))
            for n in self.after
        ]
        for tile in tiles:
            tile.after = self.after[tile.name]
        return CampaignState("c.yaml", "c", ["in"], "fake", "repo", tiles)

    def _set_chain(self, state: CampaignState) -> None:
        self.events.append("chain " + ",".join(state.chain))

    def _plan(self, state: CampaignState, tile: TileState) -> bool:
        self.events.append(f"plan {tile.name}")
        Path(tile.submit_dir).mkdir(parents=True, exist_ok=True)
        (Path(tile.submit_dir) / "workflow.json").write_text("{}")  # what bps prepare leaves
        tile.state = "prepared"
        return True

    def _submit(self, tile: TileState, *, restart: bool) -> None:
        self.events.append(f"{'restart' if restart else 'submit'} {tile.name}")
        assert len(self.events) < 100, f"the driver submits in a loop: {self.events[-5:]}"
        if tile.name in getattr(self, "refused", ()):
            tile.state, tile.message = "prepared", "submission failed: the schedd is not reachable"
            return
        tile.submissions += 1
        tile.state = "running"
        self.running_now.add(tile.name)
        self.most_at_once = max(self.most_at_once, len(self.running_now))
        self.polls[tile.name] = 0

    def _ended(self, tile: TileState) -> str | None:
        self.polls[tile.name] += 1
        if self.polls[tile.name] < 2:
            return None
        self.running_now.discard(tile.name)
        return self.outcomes[tile.name].pop(0)


def test_independent_tiles_run_side_by_side_up_to_the_limit(tmp_path):
    after = {"a": [], "b": [], "c": [], "d": ["a"]}
    driver = ScriptedDriver(tmp_path, after, {n: ["succeeded"] for n in after}, max_running=2)
    state = driver.run()
    assert [t.state for t in state.tiles] == ["succeeded"] * 4
    assert driver.most_at_once == 2
    # d is planned only after a, the tile whose visits it shares, has finished
    chained_a = next(i for i, e in enumerate(driver.events) if e.startswith("chain") and "c/a" in e)
    assert driver.events.index("plan d") > chained_a
    assert sorted(state.chain) == ["c/a", "c/b", "c/c", "c/d"]


def test_a_failed_tile_blocks_its_sharers_and_a_second_run_restarts_it(tmp_path):
    after = {"a": [], "b": ["a"], "c": []}
    driver = ScriptedDriver(
        tmp_path, after, {"a": ["failed", "succeeded"], "b": ["succeeded"], "c": ["succeeded"]}, 1
    )
    state = driver.run()
    assert {t.name: t.state for t in state.tiles} == {"a": "failed", "b": "blocked", "c": "succeeded"}
    assert "waits for a" in state.tile("b").message
    assert "plan b" not in driver.events
    # the state file holds it all; a second run skips c, restarts a (no new plan), then runs b
    again = ScriptedDriver(tmp_path, after, driver.outcomes, 1)
    state = again.run()
    assert {t.name: t.state for t in state.tiles} == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    assert [e for e in again.events if not e.startswith("chain")] == ["restart a", "plan b", "submit b"]


def test_a_tile_failing_again_is_restarted_once_per_run(tmp_path):
    driver = ScriptedDriver(tmp_path, {"a": []}, {"a": ["failed", "failed", "failed"]}, 1)
    assert driver.run().tile("a").state == "failed"
    again = ScriptedDriver(tmp_path, {"a": []}, driver.outcomes, 1)
    assert again.run().tile("a").state == "failed"
    assert [e for e in again.events if not e.startswith("chain")] == ["restart a"]


class FakeService:
    """A workflow system whose submit returns at once (HTCondor, Pegasus, Parsl): the driver polls its report."""

    name = "fake"

    def __init__(self, states: list[str], fail_submit: bool = False):
        self.states = states
        self.fail_submit = fail_submit
        self.calls: list[str] = []

    def submit(self, submit_dir):
        from bps.wms.base import WmsUnavailableError

        self.calls.append("submit")
        if self.fail_submit:
            raise WmsUnavailableError("the schedd is not reachable: try again later")
        return "42.0"

    def restart(self, submit_dir, overrides=None):
        self.calls.append("restart")
        return "43.0"

    def report(self, submit_dir):
        from bps.wms.base import JobFailure, RunReport, WmsUnavailableError

        state = self.states.pop(0)
        if state == "unreachable":
            raise WmsUnavailableError("the schedd is not reachable")
        report = RunReport(submit_dir=str(submit_dir), wms="fake", state=state)
        report.add("isr", "succeeded", 2)
        if state == "failed":
            report.add("isr", "failed")
            report.failures.append(JobFailure("isr_3", "isr", 66, reason="missing input", log_file="x.log"))
        return report


def service_driver(tmp_path: Path, service: FakeService) -> CampaignDriver:
    driver = CampaignDriver.__new__(CampaignDriver)
    driver.wms, driver.service, driver.directory = "htcondor", service, tmp_path
    driver.children, driver.lines = {}, []
    driver.out = driver.lines.append
    return driver


def test_a_cluster_tile_is_submitted_through_the_service_and_followed_by_its_report(tmp_path):
    from bps.wms.base import read_run_record

    service = FakeService(["running", "unreachable", "succeeded"])
    driver = service_driver(tmp_path, service)
    tile = TileState(name="a", where="tract = 0", run="c/a", submit_dir=str(tmp_path / "a"))
    (tmp_path / "a").mkdir()
    driver._submit(tile, restart=False)
    assert tile.state == "running" and service.calls == ["submit"]
    assert read_run_record(tmp_path / "a") == {"run_id": "42.0", "wms": "htcondor"}
    assert driver._ended(tile) is None  # still running
    assert driver._ended(tile) is None and "cannot read its state now" in tile.message
    assert driver._ended(tile) == "succeeded"
    assert tile.counts == {"isr": {**dict.fromkeys(tile.counts["isr"], 0), "succeeded": 2}}


def test_a_cluster_tile_that_failed_records_its_failures_and_is_restarted_through_the_service(tmp_path):
    service = FakeService(["failed"])
    driver = service_driver(tmp_path, service)
    tile = TileState(name="a", where="tract = 0", run="c/a", submit_dir=str(tmp_path / "a"), state="running")
    assert driver._ended(tile) == "failed"
    assert tile.failures == [
        {"name": "isr_3", "label": "isr", "reason": "missing input", "log_file": "x.log"}
    ]
    driver._submit(tile, restart=True)
    assert service.calls == ["restart"] and tile.state == "running" and tile.submissions == 1


def test_a_submission_the_workflow_system_refuses_leaves_the_tile_prepared_for_the_next_run(tmp_path):
    driver = service_driver(tmp_path, FakeService([], fail_submit=True))
    tile = TileState(name="a", where="tract = 0", run="c/a", submit_dir=str(tmp_path / "a"), state="prepared")
    driver._submit(tile, restart=False)
    assert tile.state == "prepared" and "schedd is not reachable" in tile.message


def test_a_refused_submission_is_tried_once_per_run_not_in_a_loop(tmp_path):
    driver = ScriptedDriver(tmp_path, {"a": [], "b": ["a"]}, {"a": ["succeeded"], "b": ["succeeded"]}, 2)
    driver.refused = {"a"}
    state = driver.run()
    assert {t.name: t.state for t in state.tiles} == {"a": "prepared", "b": "blocked"}
    assert [e for e in driver.events if not e.startswith("chain")] == ["plan a", "submit a"]
    again = ScriptedDriver(tmp_path, {"a": [], "b": ["a"]}, driver.outcomes, 2)
    state = again.run()
    assert {t.name: t.state for t in state.tiles} == {"a": "succeeded", "b": "succeeded"}
    assert [e for e in again.events if not e.startswith("chain")] == ["submit a", "plan b", "submit b"]


def test_a_tile_found_running_that_failed_meanwhile_is_restarted_in_the_same_run(tmp_path):
    driver = ScriptedDriver(tmp_path, {"a": []}, {"a": ["succeeded"]}, 1)
    state = driver.load_state()
    state.tile("a").state, state.tile("a").submissions = "running", 1  # the driver was stopped
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "workflow.json").write_text("{}")
    state.save(tmp_path)
    driver.polls["a"] = 0
    driver.outcomes["a"] = ["failed", "succeeded"]
    assert driver.run().tile("a").state == "succeeded"
    assert [e for e in driver.events if not e.startswith("chain")] == ["restart a"]
