"""``bps campaign``: one workflow per sky tile, each into its own RUN, chained, with shared work done once.

The driver plans and submits the tiles of a campaign file (`bps.campaign_config`) through
the same `~bps.wms.base.WorkflowService` interface ``bps submit`` uses, so a campaign runs
on every workflow system. Its rules:

- Each tile is planned by ``bps prepare`` with its expression, into RUN ``OUTPUT/TILE``,
  reading the CHAINED collection ``OUTPUT`` (the finished tiles' RUNs, newest first, then
  the submit YAML's input collections) and skipping every quantum whose outputs all exist
  there (``skip_existing_in: [OUTPUT]``): visit-level work a finished tile did is read, not
  redone, while gathering tasks still see every input.
- Tiles that share a value of ``share_units`` (visits, by default) are ordered: a tile is
  planned only once every earlier tile it shares visits with has finished, so the shared
  visit-level work is done by the first of them only. Other tiles run side by side, at
  most ``max_running`` at once.
- Everything is kept in ``CAMPAIGN_DIR/campaign_state.json`` (written atomically after each
  change), so running the campaign again skips the tiles that finished, restarts the failed
  ones (``bps restart`` of their submit directory: only what failed runs again), resumes
  waiting for the running ones and plans the rest. A tile waiting for a failed tile is
  ``blocked`` until that tile succeeds.
- A tile with nothing left to do (everything done by earlier tiles) is ``empty``: done.

The local workflow system runs a workflow in the process that submits it; the driver
starts it as a ``bps submit SUBMIT_DIR`` child process, so several local tiles run at once
like tiles on a cluster do. Other systems' ``submit`` returns at once; the driver polls
``report`` of each running tile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from supertask.atomic_write import atomic_write_text

from .campaign_config import Campaign, CampaignError, Tile, resolve_tiles
from .names import safe_name

STATE_FILE = "campaign_state.json"
STATE_FORMAT = 1
#: tile states that count as finished for the tiles waiting on them
DONE = ("succeeded", "empty")
#: the states a workflow service reports for a run that ended
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class TileState:
    """What the campaign knows of one tile (one entry of the state file)."""

    name: str
    where: str
    run: str
    submit_dir: str
    #: earlier tiles sharing a value of share_units: planned only after they finished
    after: list[str] = field(default_factory=list)
    #: pending, prepared, running, succeeded, failed, empty or blocked
    state: str = "pending"
    message: str = ""
    #: workflow submissions (the first submit and each restart)
    submissions: int = 0
    #: quanta per task label in the tile's graph
    planned: dict[str, int] = field(default_factory=dict)
    #: quanta per task label left out because earlier tiles (or earlier runs) did them
    reused: dict[str, int] = field(default_factory=dict)
    #: jobs per label and state, from the workflow system's last report
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: the failed jobs of the last report: name, label, reason, log file
    failures: list[dict[str, Any]] = field(default_factory=list)
    started: float | None = None
    ended: float | None = None


@dataclass
class CampaignState:
    """The state file of a campaign directory."""

    campaign_file: str
    output: str
    inputs: list[str]
    wms: str
    repo: str
    tiles: list[TileState]
    #: the finished tiles' RUNs, newest first: the head of the CHAINED collection ``output``
    chain: list[str] = field(default_factory=list)
    format: int = STATE_FORMAT

    def tile(self, name: str) -> TileState:
        """The state of tile ``name``."""
        for tile in self.tiles:
            if tile.name == name:
                return tile
        raise KeyError(name)

    def save(self, directory: Path) -> None:
        """Write the state file atomically (a crash leaves the previous state whole)."""
        atomic_write_text(Path(directory) / STATE_FILE, json.dumps(asdict(self), indent=1) + "\n")


def read_state(directory: str | Path) -> CampaignState:
    """The state of the campaign in ``directory``.

    Raises
    ------
    CampaignError
        If the directory holds no campaign state, or an unreadable one.
    """
    path = Path(directory) / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CampaignError(
            f"{directory} holds no campaign (no {STATE_FILE}): give the campaign directory or the campaign "
            "YAML of a campaign that was started with `bps campaign FILE`"
        ) from None
    except (OSError, ValueError) as err:
        raise CampaignError(f"{path}: cannot read the campaign state: {err}") from None
    if data.get("format") != STATE_FORMAT:
        raise CampaignError(
            f"{path}: campaign state format {data.get('format')!r}; this bps reads {STATE_FORMAT}"
        )
    tiles = [TileState(**t) for t in data.pop("tiles")]
    return CampaignState(tiles=tiles, **data)


def _shared_keys(registry: Any, tile: Tile, units: list[str]) -> set[tuple[Any, ...]]:
    """The values of ``units`` the tile's expression touches (e.g. the visits overlapping its patches)."""
    rows = registry.queryDataIds(units, where=tile.where)
    return {tuple(row[u] for u in units) for row in rows}


def order_tiles(shared: dict[str, set[tuple[Any, ...]]]) -> dict[str, list[str]]:
    """For each tile (in campaign order), the earlier tiles it shares a value with.

    A tile is planned after those: what it shares with them is done by the first of them.
    """
    names = list(shared)
    return {
        name: [other for other in names[:i] if shared[other] & shared[name]] for i, name in enumerate(names)
    }


class CampaignDriver:
    """Plan, submit and follow the tiles of one campaign until none can make progress.

    Parameters
    ----------
    campaign : `Campaign`
        The campaign file, read and checked.
    out : callable
        Prints one line of progress.
    max_running, poll_interval_s : optional
        Override the campaign file's values.
    """

    def __init__(
        self,
        campaign: Campaign,
        *,
        out: Callable[[str], None] = print,
        max_running: int | None = None,
        poll_interval_s: float | None = None,
    ):
        from .config import load_config
        from .wms.base import get_service

        self.campaign = campaign
        self.out = out
        self.max_running = max_running or campaign.spec.max_running
        self.poll_interval_s = poll_interval_s or campaign.spec.poll_interval_s
        probe = load_config(campaign.submit_file, {"output_run": campaign.output}).config
        self.wms = probe.wms
        self.repo = str(probe.repo)
        self.inputs = list(probe.input_collections)
        self.local_jobs = probe.local.jobs
        self.service = get_service(self.wms)
        self.directory = campaign.campaign_dir
        #: local runs started by this driver: tile name -> its `bps submit`/`bps restart` process
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    # -- state ------------------------------------------------------------------------
    def load_state(self) -> CampaignState:
        """The saved state, with the campaign file's tiles merged in (new tiles appended)."""
        from supertask.repo.butler import Butler

        butler = Butler(self.repo, writeable=False)
        try:
            tiles = resolve_tiles(self.campaign, butler.registry)
            units = list(self.campaign.spec.share_units)
            shared = {t.name: _shared_keys(butler.registry, t, units) for t in tiles} if units else {}
        finally:
            butler.close()
        after = order_tiles(shared) if shared else {t.name: [] for t in tiles}
        if (self.directory / STATE_FILE).exists():
            state = read_state(self.directory)
            if state.output != self.campaign.output:
                raise CampaignError(
                    f"{self.directory} holds campaign {state.output!r}, not {self.campaign.output!r}: "
                    "give this campaign its own campaign_dir"
                )
        else:
            state = CampaignState(
                campaign_file=str(self.campaign.file),
                output=self.campaign.output,
                inputs=self.inputs,
                wms=self.wms,
                repo=self.repo,
                tiles=[],
            )
        known = {t.name: t for t in state.tiles}
        merged = []
        for tile in tiles:
            old = known.get(tile.name)
            if old is None:
                old = TileState(
                    name=tile.name,
                    where=tile.where,
                    run=tile.run,
                    submit_dir=str(self.directory / "tiles" / safe_name(tile.name)),
                )
            elif old.state in ("pending", "blocked"):
                old.where = tile.where  # not planned yet: the file's expression holds
            old.after = after[tile.name]
            merged.append(old)
        state.tiles = merged + [t for t in state.tiles if t.name not in {m.name for m in merged}]
        state.inputs, state.wms = self.inputs, self.wms
        return state

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> CampaignState:
        """Run the campaign until every tile is finished, failed or blocked; return the final state."""
        self.directory.mkdir(parents=True, exist_ok=True)
        state = self.load_state()
        self._set_chain(state)
        # failed tiles are restarted once per run, and so are those found running (a driver
        # stopped while they ran: Ctrl-C cancels local runs) that turn out to have failed
        retry = {t.name for t in state.tiles if t.state in ("failed", "blocked", "running")}
        #: tiles whose submission the workflow system refused in this run: tried again by the next
        held: set[str] = set()
        for tile in state.tiles:
            if tile.state == "blocked":
                tile.state, tile.message = "pending", ""
        state.save(self.directory)
        try:
            while True:
                progressed = self._poll_running(state)
                running = [t for t in state.tiles if t.state == "running"]
                for tile in self._startable(state, retry, held):
                    if len(running) >= self.max_running:
                        break
                    retry.discard(tile.name)
                    self._start(state, tile)
                    progressed = True
                    if tile.state == "running":
                        running.append(tile)
                    elif tile.state == "prepared":  # the workflow system refused it: next run
                        held.add(tile.name)
                    state.save(self.directory)
                if not running and not self._startable(state, retry, held):
                    break
                if not progressed:
                    time.sleep(self.poll_interval_s)
        except KeyboardInterrupt:
            for child in self.children.values():  # the local runs got the signal too and stop
                try:
                    child.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pass
            self._poll_running(state)
            state.save(self.directory)
            raise
        for tile in state.tiles:
            if tile.state == "pending":
                waiting = [a for a in tile.after if state.tile(a).state not in DONE]
                tile.state = "blocked"
                tile.message = (
                    f"waits for {', '.join(waiting)} (shares {', '.join(self.campaign.spec.share_units)} with it), "
                    "which did not succeed: `bps campaign` again restarts failed tiles, then this one"
                )
                self.out(f"tile {tile.name}: blocked: {tile.message}")
        state.save(self.directory)
        return state

    def _startable(self, state: CampaignState, retry: set[str], held: set[str]) -> list[TileState]:
        """Tiles that may start now, in campaign order: their earlier sharing tiles are done."""
        out = []
        for tile in state.tiles:
            if tile.name in held:
                continue
            if tile.state in ("pending", "prepared") or (tile.state == "failed" and tile.name in retry):
                if all(state.tile(a).state in DONE for a in tile.after):
                    out.append(tile)
        return out

    def _start(self, state: CampaignState, tile: TileState) -> None:
        """Plan (unless planned), then submit, or restart a failed tile's workflow."""
        submit_dir = Path(tile.submit_dir)
        prepared = (submit_dir / "workflow.json").exists()
        if tile.state == "failed" and prepared and tile.submissions:
            self.out(f"tile {tile.name}: restarting what failed in {submit_dir}")
            self._submit(tile, restart=True)
            return
        if not prepared:
            if not self._plan(state, tile):
                return
        self._submit(tile, restart=False)

    def _plan(self, state: CampaignState, tile: TileState) -> bool:
        """``bps prepare`` of the tile; False if it came out empty or failed (the tile says why)."""
        from supertask.graph.builder import EmptyGraphError, GraphBuilderError
        from supertask.graph.quantum_graph import QuantumGraph

        from .config import ConfigError, load_config
        from .prepare import PrepareError, prepare
        from .wms.base import WmsError

        overrides = {
            "output_run": tile.run,
            "where": tile.where,
            "input_collections": [state.output],
            "skip_existing_in": [state.output],
            "submit_dir": tile.submit_dir,
        }
        tile.started = tile.started or time.time()
        try:
            resolved = load_config(self.campaign.submit_file, overrides)
            prepared = prepare(resolved, service=self.service)
        except EmptyGraphError as err:
            tile.state, tile.ended = "empty", time.time()
            tile.message = "nothing to do: " + str(err).splitlines()[0]
            self.out(f"tile {tile.name}: {tile.message}")
            return False
        except (ConfigError, PrepareError, WmsError, GraphBuilderError, OSError, ValueError) as err:
            tile.state, tile.ended = "failed", time.time()
            tile.message = f"planning failed: {err}"
            self.out(f"tile {tile.name}: {tile.message}")
            return False
        header = QuantumGraph.readHeader(prepared.workflow.graph_file)
        tile.reused = dict((header.get("metadata") or {}).get("skipped_existing", {}))
        tile.planned = {}
        for job in prepared.workflow.jobs.values():
            tile.planned[job.label] = tile.planned.get(job.label, 0) + len(job.quantum_ids)
        tile.state, tile.message = "prepared", ""
        reused = ", ".join(f"{label} {n}" for label, n in tile.reused.items())
        self.out(
            f"tile {tile.name}: planned {sum(tile.planned.values())} quanta into RUN {tile.run}"
            + (f" (done by earlier tiles, not planned again: {reused})" if reused else "")
        )
        return True

    def _submit(self, tile: TileState, *, restart: bool) -> None:
        """Hand the tile's workflow to the workflow system (local: a child ``bps`` process)."""
        from .wms.base import WmsError, write_run_record

        submit_dir = Path(tile.submit_dir)
        tile.submissions += 1
        tile.started = tile.started or time.time()
        tile.ended = None
        if self.wms == "local":
            log = self.directory / "logs" / f"{safe_name(tile.name)}.{tile.submissions}.log"
            log.parent.mkdir(exist_ok=True)
            command = [sys.executable, "-m", "bps.cli", "restart" if restart else "submit", str(submit_dir)]
            with open(log, "wb") as stream:
                self.children[tile.name] = subprocess.Popen(
                    [*command, "-j", str(self.local_jobs)],
                    stdout=stream,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            tile.state, tile.message = "running", f"local run, output in {log}"
        else:
            try:
                if restart:
                    run_id = self.service.restart(submit_dir)
                else:
                    run_id = self.service.submit(submit_dir)
                    write_run_record(submit_dir, wms=self.wms, run_id=run_id)
            except WmsError as err:
                tile.state, tile.message = ("failed" if restart else "prepared"), f"submission failed: {err}"
                self.out(f"tile {tile.name}: {tile.message}")
                return
            tile.state, tile.message = "running", f"{self.wms} run {run_id}"
        self.out(f"tile {tile.name}: {'restarted' if restart else 'submitted'} ({tile.message})")

    def _poll_running(self, state: CampaignState) -> bool:
        """Update the running tiles from their workflow systems; True if one finished."""
        finished = False
        for tile in state.tiles:
            if tile.state != "running":
                continue
            ended = self._ended(tile)
            if ended is None:
                continue
            finished = True
            tile.ended = time.time()
            if ended == "succeeded":
                tile.state = "succeeded"
                tile.message = ""
                state.chain = [tile.run] + [r for r in state.chain if r != tile.run]
                self._set_chain(state)
            else:
                tile.state = "failed"
                tile.message = f"the workflow {ended}; `bps report {tile.submit_dir}` for details"
            self.out(f"tile {tile.name}: {tile.state}" + (f": {tile.message}" if tile.message else ""))
            state.save(self.directory)
        return finished

    def _ended(self, tile: TileState) -> str | None:
        """The final state of a running tile's workflow, or None while it runs."""
        from .wms.base import WmsError

        child = self.children.get(tile.name)
        if child is not None and child.poll() is None:
            return None
        self.children.pop(tile.name, None)
        try:
            report = self.service.report(Path(tile.submit_dir))
        except (WmsError, OSError, ValueError) as err:
            if child is not None:
                return "failed"
            tile.message = f"cannot read its state now: {err}"
            return None
        tile.counts = {label: dict(c) for label, c in report.counts.items()}
        tile.failures = [
            {"name": f.name, "label": f.label, "reason": f.reason, "log_file": f.log_file}
            for f in report.failures
        ]
        if report.state in TERMINAL:
            return report.state
        if child is not None or (self.wms == "local" and not _local_runner_alive(Path(tile.submit_dir))):
            return "failed"  # the local runner ended without recording an end: it died
        return None

    def _set_chain(self, state: CampaignState) -> None:
        """The CHAINED collection ``output``: the finished tiles' RUNs, newest first, then the inputs."""
        from supertask.repo.butler import Butler

        butler = Butler(state.repo)
        try:
            registry = butler.registry
            known = []
            for run in state.chain:
                try:
                    registry.getRunProvenance(run)
                    known.append(run)
                except KeyError:  # a tile whose every quantum had no work registers no RUN
                    continue
            registry.setChain(state.output, known + list(state.inputs))
        except KeyError as err:
            raise CampaignError(
                f"cannot chain {state.output!r}: {str(err).strip(chr(34) + chr(39))}; "
                "check input_collections of the submit file"
            ) from None
        finally:
            butler.close()


def _local_runner_alive(submit_dir: Path) -> bool:
    """Whether the local run recorded in ``submit_dir`` still has its runner process."""
    from .wms.base import read_run_record

    pid = read_run_record(submit_dir).get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def campaign_directory(target: str | Path) -> Path:
    """The campaign directory of ``target``: a campaign directory itself, or a campaign file naming one."""
    path = Path(target)
    if path.is_dir():
        return path
    from .campaign_config import load_campaign

    return load_campaign(path).campaign_dir
