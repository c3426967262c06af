"""Benchmark: translate a generic workflow of N single-quantum jobs into DAGMan files.

Usage: ``python benchmarks/bench_htcondor_translate.py [N ...]`` (default 100000).
Each N runs in a fresh process so the peak resident memory (ru_maxrss) is that of
one translation: building the GenericWorkflow in memory, then `write_dag`. Prints
the time of the translation alone, the peak memory, and the number and size of the
files written (targets: 10^5 jobs < 10 s; 10^6 < 100 s and < 3 GB).

The workflow mimics a data-release tile: per (visit, detector) calibrate jobs with
one raw input and two outputs, per (tract, patch) coadd jobs gathering 8 calibrated
exposures, per (tract, patch) detect jobs; file transfer staging off (shared).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(n: int, submit_dir: str):
    from bps.workflow import GenericWorkflow, Job, SiteConfig, WorkflowFile

    site = SiteConfig(
        name="bench", wms="htcondor", python=sys.executable, condor={"skip_checks": ["tmp_node_log"]}
    )
    wf = GenericWorkflow("bench", submit_dir, "/data/graphs/bench.qgraph", "/data/repo", "u/bench/run", site)
    graph = wf.graph_file
    n_cal = n * 8 // 10
    n_patch = (n - n_cal) // 2
    manifests = f"{submit_dir}/manifests"
    for i in range(n_cal):
        visit, det = divmod(i, 100)
        did = {"instrument": "Cam", "visit": visit, "detector": det}
        raw = WorkflowFile(f"raw.v{visit}.d{det}", "raw", did, f"raw/{visit}/raw_{visit}_{det}.fits")
        outs = [
            WorkflowFile(
                f"{t}.v{visit}.d{det}", t, did, f"run/{t}/{visit}/{t}_{visit}_{det}.fits", f"cal_{i}"
            )
            for t in ("calexp", "src")
        ]
        args = ["--graph", graph, "--quantum", str(i), "--job", f"cal_{i}", "--manifest-dir", manifests]
        wf.add_job(
            Job(f"cal_{i}", "calibrate", [i], args, inputs=[raw], outputs=outs, log_subdir="logs/calibrate")
        )
    for p in range(n_patch):
        tract, patch = divmod(p, 100)
        did = {"skymap": "s", "tract": tract, "patch": patch}
        parents = [f"cal_{(p * 8 + k) % n_cal}" for k in range(8)]
        ins = [wf.jobs[q].outputs[0] for q in dict.fromkeys(parents)]
        coadd = WorkflowFile(
            f"coadd.t{tract}.p{patch}", "coadd", did, f"run/coadd/{tract}/c_{patch}.fits", f"coadd_{p}"
        )
        qid = n_cal + p
        args = ["--graph", graph, "--quantum", str(qid), "--job", f"coadd_{p}", "--manifest-dir", manifests]
        wf.add_job(
            Job(f"coadd_{p}", "coadd", [qid], args, inputs=ins, outputs=[coadd], log_subdir="logs/coadd"),
            sorted(set(parents)),
        )
        qid2 = n_cal + n_patch + p
        det = WorkflowFile(
            f"det.t{tract}.p{patch}", "det", did, f"run/det/{tract}/d_{patch}.fits", f"detect_{p}"
        )
        args = ["--graph", graph, "--quantum", str(qid2), "--job", f"detect_{p}", "--manifest-dir", manifests]
        wf.add_job(
            Job(
                f"detect_{p}", "detect", [qid2], args, inputs=[coadd], outputs=[det], log_subdir="logs/detect"
            ),
            [f"coadd_{p}"],
        )
    wf.final = Job("finalize", "finalize", [], ["finalize", submit_dir], executable="bps", log_subdir="logs")
    return wf


def one(n: int) -> dict:
    from bps.wms.htcondor.translator import write_dag

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        t0 = time.perf_counter()
        wf = build(n, tmp)
        t1 = time.perf_counter()
        layout = write_dag(wf)
        t2 = time.perf_counter()
        files = [p for p in Path(tmp).rglob("*") if p.is_file()]
        return {
            "jobs": len(wf.jobs),
            "build_s": round(t1 - t0, 2),
            "translate_s": round(t2 - t1, 2),
            "files": len(files),
            "dag_mib": round(layout.dag.stat().st_size / 2**20, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(one(int(sys.argv[2]))))
        return
    sizes = [int(float(a)) for a in sys.argv[1:]] or [100_000]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'jobs':>9} {'build s':>8} {'translate s':>12} {'files':>6} {'dag MiB':>8} {'peak RSS MiB':>13}")
    for n in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout)
        print(
            f"{r['jobs']:>9} {r['build_s']:>8} {r['translate_s']:>12} {r['files']:>6} {r['dag_mib']:>8} {r['peak_rss_mib']:>13}"
        )


if __name__ == "__main__":
    main()
