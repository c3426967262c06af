"""Hand-built generic workflows for the HTCondor tests (no QuantumGraph needed).

A diamond: two ``calibrate`` jobs read overall inputs from the datastore, ``coadd``
gathers their outputs, ``detect`` reads the coadd; a FINAL job moves staged outputs
into the datastore. Jobs run ``htcondor_fake_job.py`` instead of ``run_quantum``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bps.workflow import GenericWorkflow, Job, Resources, RetryPolicy, SiteConfig, WorkflowFile, dataset_lfn

HERE = Path(__file__).resolve().parent
FAKE_JOB = str(HERE / "htcondor_fake_job.py")
FAKE_FINALIZE = str(HERE / "htcondor_fake_finalize.py")


def pool_site(staging: str = "shared", **condor) -> SiteConfig:
    """A site for tests: this interpreter, and the two pool checks that tmp directories fail skipped."""
    condor = {"skip_checks": ["tmp_node_log", "job_user"], **condor}
    return SiteConfig(name="test-pool", wms="htcondor", staging=staging, python=sys.executable, condor=condor)


def _file(dtype: str, data_id: dict, producer: str | None) -> WorkflowFile:
    lfn = dataset_lfn(dtype, data_id)
    return WorkflowFile(lfn, dtype, data_id, f"{dtype}/{lfn}.txt", producer)


def diamond(
    tmp: Path,
    staging: str = "shared",
    extra: dict[str, list[str]] | None = None,
    retry: RetryPolicy | None = None,
    site: SiteConfig | None = None,
    name: str = "diamond",
) -> GenericWorkflow:
    """The diamond workflow under ``tmp`` (repo with raw inputs, graph file, submit dir)."""
    extra = extra or {}
    retry = retry or RetryPolicy(retries=2)
    repo = tmp / "repo"
    tmp.mkdir(parents=True, exist_ok=True)
    graph = tmp / "pipeline.qgraph"
    graph.write_text("not a real graph: the fake job only checks that it arrived\n")
    site = site or pool_site(staging)
    wf = GenericWorkflow(
        name=name,
        submit_dir=str(tmp / "submit"),
        graph_file=str(graph),
        repo=str(repo),
        output_run="u/test/run1",
        site=site,
    )

    def add(name: str, label: str, qid: int, inputs, outputs, parents=()):
        args = ["--graph", str(graph), "--quantum", str(qid)]
        args += [f"--in={f.lfn}={f.path}" for f in inputs] + [f"--out={f.lfn}={f.path}" for f in outputs]
        wf.add_job(
            Job(
                name,
                label,
                [qid],
                args + extra.get(name, []),
                retry=retry,
                inputs=inputs,
                outputs=outputs,
                log_subdir=f"logs/{label}",
                executable=FAKE_JOB,
            ),
            parents,
        )

    calexps = []
    for visit in (1, 2):
        raw = _file("raw", {"instrument": "DemoCam", "visit": visit}, None)
        (repo / raw.path).parent.mkdir(parents=True, exist_ok=True)
        (repo / raw.path).write_text(f"raw pixels of visit {visit}\n")
        calexp = _file("calexp", {"instrument": "DemoCam", "visit": visit}, f"calibrate_{visit}")
        add(f"calibrate_{visit}", "calibrate", visit, [raw], [calexp])
        calexps.append(calexp)
    coadd = _file("coadd", {"skymap": "demo", "tract": 0}, "coadd_0")
    add("coadd_0", "coadd", 10, calexps, [coadd], ["calibrate_1", "calibrate_2"])
    cat = _file("catalog", {"skymap": "demo", "tract": 0}, "detect_0")
    add("detect_0", "detect", 20, [coadd], [cat], ["coadd_0"])
    wf.final = Job(
        "finalize",
        "finalize",
        [],
        [str(Path(wf.submit_dir).absolute())],
        executable=FAKE_FINALIZE,
        resources=Resources(memory_mb=1024),
        log_subdir="logs",
        retry=RetryPolicy(retries=0),
    )
    return wf


def output_checksums(wf: GenericWorkflow) -> dict[str, str]:
    """lfn -> sha256 of every output in the datastore."""
    import hashlib

    result = {}
    for job in wf.jobs.values():
        for f in job.outputs:
            path = Path(wf.repo) / f.path
            if path.exists():
                result[f.lfn] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result
