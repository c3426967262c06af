"""Final registration of many staged outputs on SQLite.

Target (issue 6): registering 10^5 outputs takes under 60 s on the 2-core
development machine. The figure covers reading the manifests, verifying every
file's size and checksum, and the batched registry inserts; the rerun (which must
register nothing twice) is timed as well.

Usage: ``.venv/bin/python benchmarks/bench_finalize.py [N_OUTPUTS] [PER_JOB]``
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bps.finalize import finalize
from bps.staging import Manifest, StagedFile, manifest_path, write_manifest
from bps.workflow import GenericWorkflow, Job, WorkflowFile, dataset_lfn
from bps.workflow_io import save_workflow
from supertask.repo.butler import Butler
from supertask.repo.datastore import checksum_file

RUN = "bench/finalize"
UNITS = ["detector", "instrument", "visit"]


def setup(work: Path, n: int, per_job: int) -> Path:
    repo = work / "repo"
    Butler.create(repo).close()
    submit = work / "submit"
    wf = GenericWorkflow(name="bench", submit_dir=str(submit), graph_file="g", repo=str(repo), output_run=RUN)
    root = str(repo.resolve())
    for start in range(0, n, per_job):
        name = f"job{start // per_job}"
        staged, outputs = {}, []
        for i in range(start, min(n, start + per_job)):
            data_id = {"instrument": "Cam", "visit": i // 100, "detector": i % 100}
            rel = f"{RUN}/calexp/{i // 1000}/calexp_{i}.json"
            path = repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f'{{"i": {i}}}')
            lfn = dataset_lfn("calexp", data_id)
            staged[i] = [
                StagedFile(
                    lfn,
                    "calexp",
                    UNITS,
                    "StructuredDataDict",
                    data_id,
                    rel,
                    path.stat().st_size,
                    checksum_file(path),
                )
            ]
            outputs.append(WorkflowFile(lfn, "calexp", data_id, rel))
        write_manifest(manifest_path(submit / "manifests", name), Manifest(name, RUN, root, staged))
        wf.add_job(Job(name=name, label="calexp", quantum_ids=list(staged), arguments=[], outputs=outputs))
    save_workflow(wf, submit / "workflow.json")
    return submit


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    per_job = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        submit = setup(Path(tmp), n, per_job)
        setup_s = time.perf_counter() - start
        start = time.perf_counter()
        summary = finalize(submit)
        first = time.perf_counter() - start
        assert summary.registered == n, summary.text()
        start = time.perf_counter()
        again = finalize(submit)
        rerun = time.perf_counter() - start
        assert again.registered == 0 and again.already_registered == n
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, SQLite"
    )
    print(f"{n} outputs in {n // per_job} job manifests (set-up {setup_s:.1f} s)")
    print(f"finalize (verify + register): {first:6.1f} s  ({n / first:,.0f} datasets/s; target < 60 s)")
    print(f"finalize rerun (no-op):       {rerun:6.1f} s")


if __name__ == "__main__":
    main()
