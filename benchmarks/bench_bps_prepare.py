"""`bps prepare` end to end: read a saved graph, build the workflow, write the HTCondor DAG.

What an operator waits for between planning and submitting (submission time
and memory grow with the graph). The graph is planned once with `supertask qgraph build`
over a synthetic repository (`synthetic_repo`, `bench_tasks`), then `bps prepare` runs in a
fresh process whose CPU time and peak RSS are taken from ``getrusage(RUSAGE_CHILDREN)``.
By default calibrate quanta are clustered per visit (100 detectors per job) and the other
tasks are one job per quantum; ``--unclustered`` makes every quantum its own job. The
workflow system is HTCondor on the `htcondor_shared` site, or Pegasus on `pegasus_sharedfs`
(``--wms pegasus``).

Usage::

    .venv/bin/python benchmarks/bench_bps_prepare.py [--n 10000] [--repo DIR] [--qgraph FILE]
        [--wms htcondor|pegasus] [--unclustered] [--submit-dir DIR] [--profile out.prof]

``--repo`` reuses a repository made by ``bench_preflight.py --keep DIR``; ``--qgraph``
reuses a graph of that repository. The submit directory is made outside /tmp (HTCondor's
DAGMan refuses node logs there) and removed afterwards unless ``--keep-submit``;
``--submit-dir`` names it (it must not exist), e.g. to compare two commits' files.
``--profile`` runs ``bps prepare`` under cProfile (its CPU figure is then not comparable).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import synthetic_repo  # noqa: E402
from bench_preflight import machine_note  # noqa: E402

#: Runs one command and prints its CPU seconds and peak RSS (KiB): a wrapper process per
#: measured command, so that each figure is that command's alone.
_MEASURE = (
    "import json, resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); print(json.dumps([u.ru_utime + u.ru_stime, u.ru_maxrss]))"
)


#: ``bps`` with the line `bps.forked_write` logs about the child that wrote ``workflow.json``.
_BPS_PREPARE = (
    "import logging; logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s'); "
    "logging.getLogger('bps.forked_write').setLevel(logging.DEBUG); from bps.cli import main; main()"
)


def run(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Run ``command``; return its wall seconds, CPU seconds and peak RSS in MB.

    The CPU seconds include the children the command waited for (the import check,
    the process writing ``workflow.json``); the peak is the largest of these processes'.
    """
    import json

    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    for line in out.stderr.decode(errors="replace").splitlines():
        if line.startswith("bps.forked_write:"):
            print(line.replace("bps.forked_write: child", "  workflow.json by child"))
    cpu, peak_kib = json.loads(out.stdout)
    return wall, cpu, peak_kib / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="target number of quanta (default 10^4)")
    parser.add_argument("--repo", help="an existing synthetic repository (bench_preflight.py --keep DIR)")
    parser.add_argument("--qgraph", help="an existing graph of that repository")
    parser.add_argument("--keep-submit", action="store_true", help="keep the submit directory")
    parser.add_argument("--wms", choices=("htcondor", "pegasus"), default="htcondor", help="workflow system")
    parser.add_argument("--unclustered", action="store_true", help="one job per quantum")
    parser.add_argument("--submit-dir", help="write the submit directory here (kept; must not exist)")
    parser.add_argument("--profile", help="run bps prepare under cProfile, writing this file")
    args = parser.parse_args(argv)
    print(machine_note())
    bin_dir = Path(sys.executable).parent
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    )
    work = Path(tempfile.mkdtemp(prefix="bench_bps_prepare_", dir=Path.home()))
    try:
        repo = Path(args.repo) if args.repo else work / "repo"
        if not args.repo:
            layout = synthetic_repo.layout_for_visits(synthetic_repo.visits_for_quanta(args.n))
            synthetic_repo.make_repo(repo, layout).close()
            print(f"set-up: {layout.visits} visits x {layout.detectors} detectors, {layout.tracts} tracts")
        qgraph = Path(args.qgraph) if args.qgraph else work / "bench.qgraph"
        if not args.qgraph:
            pipeline = work / "pipeline.yaml"
            import bench_tasks

            pipeline.write_text(bench_tasks.make_pipeline().toYaml())
            wall, cpu, peak = run(
                [str(bin_dir / "supertask"), "qgraph", "build", str(repo), "-p", str(pipeline),
                 "-i", synthetic_repo.INPUT_RUN, "-o", "bench/out", "--max-rows", "0", "--save", str(qgraph)],
                env,
            )  # fmt: skip
            print(f"supertask qgraph build: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak:,.0f} MB")
        submit = Path(args.submit_dir).absolute() if args.submit_dir else work / "submit"
        # Beside a named submit directory, so that two runs record the same configuration path.
        config = submit.with_name(submit.name + ".bps.yaml") if args.submit_dir else work / "bps.yaml"
        site = "htcondor_shared" if args.wms == "htcondor" else "pegasus_sharedfs"
        text = (
            f"repo: {repo}\nqgraph: {qgraph}\noutput_run: bench/out\nwms: {args.wms}\n"
            f"compute_site: {site}\nsubmit_dir: {submit}\n"
            # The jobs import the benchmark's tasks from here: prepare checks that they can.
            f"site:\n  environment:\n    PYTHONPATH: {HERE}\n"
        )
        if not args.unclustered:
            text += (
                "clustering:\n  clusters:\n    - name: single_frame\n      labels: [calibrate]\n"
                "      units: [instrument, visit]\n"
            )
        config.write_text(text)
        # bps's own entry point, with the forked child's usage logged: the wrapper's
        # RUSAGE_CHILDREN counts the child's CPU but gives only the larger of the two peaks.
        command = [sys.executable, "-c", _BPS_PREPARE, "prepare", str(config)]
        if args.profile:
            profile = str(Path(args.profile).absolute())
            command = [
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                profile,
                str(bin_dir / "bps"),
                "prepare",
                str(config),
            ]
        wall, cpu, peak = run(command, env)
        print(f"{args.wms}, {'unclustered' if args.unclustered else 'calibrate clustered per visit'}")
        files = [p for p in submit.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        workflow = (submit / "workflow.json").stat().st_size
        print(f"bps prepare: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak:,.0f} MB")
        print(
            f"submit directory: {len(files)} files, {size / 2**20:,.0f} MiB "
            f"(workflow.json {workflow / 2**20:,.0f} MiB)"
        )
        if args.keep_submit or args.submit_dir:
            print(f"kept: {submit}")
            return 0
    finally:
        if not args.keep_submit:
            shutil.rmtree(work, ignore_errors=True)
    print(machine_note().replace("machine:", "after:"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
