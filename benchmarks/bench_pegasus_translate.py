"""Benchmark: write the Pegasus workflow, catalogs and properties for N quanta.

Target (issue 8): under 30 s for 10^5 quanta. The generic workflow is synthetic but
shaped like the demo DRP: per (visit, detector) an ``isr`` job (raw -> postISR) and a
``calibrate`` job (postISR -> calexp + src), and per patch a ``coadd`` job gathering
the calexps of 50 detectors. One quantum per job (no clustering): the worst case for
the translator. The time covers translation, the 4 catalog/workflow files, the output
map and the job map; building the generic workflow is not counted.

Usage: ``.venv/bin/python benchmarks/bench_pegasus_translate.py [N ...]``
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bps.wms.pegasus.translator import translate, write_plan
from bps.workflow import GenericWorkflow, Job, SiteConfig, WorkflowFile, dataset_lfn


def synthetic_workflow(n_quanta: int, submit: Path) -> GenericWorkflow:
    """A generic workflow of about ``n_quanta`` single-quantum jobs (see the module docstring)."""
    site = SiteConfig(name="bench", wms="pegasus", pegasus={"execution_site": "local"})
    graph = str(submit / "bench.qgraph")
    wf = GenericWorkflow("bench", str(submit), graph, str(submit / "repo"), "u/bench", site=site)
    manifests = str(submit / "manifests")

    def wfile(dtype: str, data_id: dict, producer: str | None) -> WorkflowFile:
        lfn = dataset_lfn(dtype, data_id)
        return WorkflowFile(lfn, dtype, data_id, f"u/bench/{dtype}/{lfn}.npy", producer)

    def job(name: str, label: str, qid: int, inputs, outputs) -> Job:
        args = ["--graph", graph, "--quantum", str(qid), "--job", name, "--manifest-dir", manifests]
        return Job(name, label, [qid], args, inputs=inputs, outputs=outputs)

    per_patch = 50
    qid = 0
    detector = 0
    patch_inputs: list[WorkflowFile] = []
    patch = 0
    while qid < n_quanta:
        data_id = {"instrument": "Demo", "visit": detector // 100, "detector": detector % 100}
        isr = f"isr.{detector}"
        post = wfile("postISR", data_id, isr)
        wf.add_job(job(isr, "isr", qid, [wfile("raw", data_id, None)], [post]))
        cal = f"calibrate.{detector}"
        calexp = wfile("calexp", data_id, cal)
        wf.add_job(job(cal, "calibrate", qid + 1, [post], [calexp, wfile("src", data_id, cal)]), [isr])
        qid += 2
        detector += 1
        patch_inputs.append(calexp)
        if len(patch_inputs) == per_patch:
            name = f"coadd.{patch}"
            out = wfile("coadd", {"skymap": "s", "tract": 0, "patch": patch}, name)
            wf.add_job(
                job(name, "coadd", qid, patch_inputs, [out]), sorted({f.producer for f in patch_inputs})
            )
            qid += 1
            patch += 1
            patch_inputs = []
    wf.final = Job("finalize", "finalize", [], ["finalize", str(submit)], executable="bps")
    return wf


def run(n_quanta: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        submit = Path(tmp)
        wf = synthetic_workflow(n_quanta, submit)
        cpu = time.process_time()
        start = time.perf_counter()
        plan = translate(wf)
        translated = time.perf_counter()
        main = write_plan(plan, submit / "pegasus")
        written = time.perf_counter()
        cpu = time.process_time() - cpu
        size = sum(p.stat().st_size for p in main.parent.iterdir() if p.is_file())
        print(
            f"{n_quanta:>7} quanta  {len(wf.jobs):>7} jobs  translate {translated - start:6.2f} s  "
            f"write {written - translated:6.2f} s  total {written - start:6.2f} s (cpu {cpu:6.2f} s)  "
            f"files {size / 2**20:7.1f} MiB"
        )


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [1_000, 10_000, 100_000]
    print(
        f"# Pegasus translation; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}"
    )
    for n in sizes:
        run(n)


if __name__ == "__main__":
    main(sys.argv[1:])
