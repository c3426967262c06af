"""The main job of ``make demo``: the whole system on one sky tile, on this machine.

It runs the very commands a user would type (each is printed first), so that the
output doubles as a walkthrough:

1. create a demo repository on SQLite with calibrations and a reference catalogue, and
   write the raw data as files (``supertask demo-data --raw-files``); register their
   exposures (``supertask register-units``), ingest them (``supertask ingest``) and group
   the exposures into visits with their sky regions (``supertask define-visits``), as an
   operator does with a camera's raws;
2. plan one sky tile (``tract = 0``) and save the graph (``supertask qgraph``);
3. run it locally with 2 processes (``supertask run``);
4. run the same graph through the batch system's local workflow service
   (``bps submit --wms local``) and write its HTML run report (``bps report --html``);
5. write the HTCondor DAGMan and Pegasus workflows for the same graph
   (``bps prepare``), ready to submit on a cluster.

Usage: ``python -m demo_drp.main_job [DEMO_DIR]`` (default ``./demo_run``).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

from .data import RAW_RUN, RAW_UNITS_FILE

#: The demo pipeline, package data of demo_drp (``examples/demo_pipeline.yaml`` links to it).
PIPELINE = Path(str(files("demo_drp").joinpath("pipeline.yaml")))
INPUTS = "DemoCam/defaults"
WHERE = "tract = 0"
LOCAL_RUN = "demo/tile0"
#: one output RUN per workflow system: each run registers its own outputs, so a workflow
#: submitted from the demo's submit directory makes new datasets instead of meeting the
#: local run's
BATCH_RUNS = {"local": "demo/tile0-batch", "htcondor": "demo/tile0-htcondor", "pegasus": "demo/tile0-pegasus"}


def _script(name: str) -> str:
    """The console script installed beside this interpreter (works without an activated venv)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _run(args: list[str], step: str) -> None:
    print(f"\n=== {step}\n$ {' '.join(shlex.quote(a) for a in args)}", flush=True)
    start = time.perf_counter()
    completed = subprocess.run(args)
    if completed.returncode != 0:
        sys.exit(f"demo: step failed ({step}), exit code {completed.returncode}")
    print(f"--- {step}: {time.perf_counter() - start:.1f} s", flush=True)


def _write_bps_config(path: Path, demo_dir: Path, graph: Path, wms: str, site: str, run: str) -> None:
    """A submit YAML like the ones in examples/ (see docs/bps.md for every key)."""
    path.write_text(
        "\n".join(
            [
                f"# bps submit config written by the demo for the {wms} workflow system",
                f"repo: {demo_dir / 'repo'}",
                f"qgraph: {graph}",
                f"output_run: {run}",
                f"wms: {wms}",
                f"compute_site: {site}",
                f"submit_dir: {demo_dir / 'submit' / wms}",
                *_tmp_override(demo_dir, wms),
                "# one job per exposure for ISR, per visit for calibration and warps, per patch for coadds",
                "# (job start-up and scheduling dominate small quanta)",
                "clustering:",
                "  clusters:",
                "    - {name: isr, labels: [isr], units: [instrument, exposure]}",
                "    - {name: visit, labels: [calibrate, makeWarp], units: [instrument, visit]}",
                "    - {name: coadd, labels: [assembleCoadd, detectCoadd], units: [skymap, tract, patch], max_size: 20}",
                "",
            ]
        )
    )


def _tmp_override(demo_dir: Path, wms: str) -> list[str]:
    """Let the demo *write* an HTCondor workflow under /tmp, saying why this is demo-only.

    DAGMan's default strict mode refuses node logs under /tmp, and the HTCondor
    translator refuses such a submit directory at prepare time. The
    demo only prepares the workflow, so a clone under /tmp can still show it.
    """
    if wms != "htcondor" or not str(demo_dir).startswith("/tmp/"):
        return []
    print(
        f"note: {demo_dir} is under /tmp; the demo's HTCondor workflow skips the tmp_node_log check "
        "(a real submission would need a submit directory elsewhere)"
    )
    return ["site: {condor: {skip_checks: [tmp_node_log]}}"]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    demo_dir = Path(argv[0] if argv else "demo_run").resolve()
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True)
    repo = demo_dir / "repo"
    graph = demo_dir / "tile0.qgraph"
    start = time.perf_counter()

    supertask = _script("supertask")
    raws = demo_dir / "raws"
    _run(
        [supertask, "demo-data", str(repo), "--exposures", "6", "--raw-files", str(raws)],
        "create the repository with calibrations and write the raw files",
    )
    _run([supertask, "register-units", str(repo), str(demo_dir / RAW_UNITS_FILE)], "register the exposures")
    _run(
        [
            *(supertask, "ingest", str(repo), str(raws), "--run", RAW_RUN, "-t", "raw"),
            *("--units", "instrument,exposure,detector", "--storage-class", "ArrayDict"),
        ],
        "ingest the raw files",
    )
    _run(
        [supertask, "define-visits", str(repo), "--regions", "demo_drp.visits:DemoCamRegions"],
        "define visits",
    )
    plan = [supertask, "qgraph", str(repo), "-p", str(PIPELINE), "-i", INPUTS, "--where", WHERE]
    _run(
        [*plan, "-o", LOCAL_RUN, "--save", str(graph), "--dot", str(demo_dir / "tile0.dot")],
        "plan sky tile 0",
    )
    _run([supertask, "run", str(repo), "--qgraph", str(graph), "-j", "2"], "run the tile locally")

    # Each workflow system gets a graph of its own, with its own output run, so that none
    # writes over the files of another.
    batch = []
    for wms, site, command in (
        ("local", "local", "submit"),
        ("htcondor", "htcondor_shared", "prepare"),
        ("pegasus", "pegasus_local", "prepare"),
    ):
        run = BATCH_RUNS[wms]
        batch_graph = demo_dir / f"tile0-{wms}.qgraph"
        _run([*plan, "-o", run, "--save", str(batch_graph)], f"plan sky tile 0 again for {wms} into {run}")
        config = demo_dir / f"bps_{wms}.yaml"
        _write_bps_config(config, demo_dir, batch_graph, wms, site, run)
        verb = (
            "run the tile through bps with local jobs" if command == "submit" else f"write the {wms} workflow"
        )
        _run([_script("bps"), command, str(config)], verb)
        batch.append((wms, demo_dir / "submit" / wms))
    report = demo_dir / "report-local-batch.html"
    _run(
        [_script("bps"), "report", str(demo_dir / "submit" / "local"), "--html", str(report)],
        "write the HTML run report of the local batch run",
    )

    print(f"\n=== demo finished in {time.perf_counter() - start:.1f} s; everything is under {demo_dir}")
    runs = ", ".join(repr(r) for r in (LOCAL_RUN, *BATCH_RUNS.values()))
    print(f"repository:          {repo}  (outputs in runs {runs})")
    print(f"graph:               {graph}  (supertask qgraph show {graph})")
    print(f"summary and logs:    {repo / LOCAL_RUN / 'logs'}")
    print(f"coadds:              supertask query datasets {repo} deepCoadd --collections {LOCAL_RUN}")
    for wms, submit_dir in batch:
        print(f"{wms + ' submit dir:':<20} {submit_dir}")
    print(f"{'HTML run report:':<20} {report}  (the local batch run; open it in a browser)")


if __name__ == "__main__":
    main()
