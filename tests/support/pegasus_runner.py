"""Execute a written Pegasus workflow the way Pegasus would, without Pegasus.

The runner reads ``workflow.yml``, ``replicas.yml`` and ``transformations.yml``
from a Pegasus directory and runs every job in an order that respects
``jobDependencies``: for each job it makes a fresh working directory, stages in
every input under its logical file name (from the replica catalog or from the
job that produced it), runs the transformation's executable with the job's
arguments in that directory, and collects the outputs the job declared. It fails
loudly where Pegasus would: an input with no replica and no producer, a job
exiting non-zero, a declared output not produced, a cycle.

Stage-out is a step of its own, as in the DAG Pegasus plans: the planner makes a
``stage_out_*`` job a child of the job whose outputs it copies and a parent of
nothing we declare, so DAGMan may run it after any later job. The runner runs
every stage-out of a workflow at the latest moment DAGMan could: after all of
that workflow's jobs. A job that needs staged outputs is only safe as a child of
a sub-workflow (``type: pegasusWorkflow``), whose node ends once everything in it,
stage-outs included, has ended; the runner runs a sub-workflow that way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path


class PegasusRunError(RuntimeError):
    """The workflow could not be executed as written."""


@dataclass
class RunResult:
    """What a run produced: logical file name -> file, and the job order used."""

    outputs: dict[str, Path] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    #: lfn -> where stage-out put it (the Replica mapper's ``outputs.map``, else ``outputs/``)
    staged: dict[str, Path] = field(default_factory=dict)
    #: jobs not run because all their outputs were in the replica catalog (data reuse)
    pruned: list[str] = field(default_factory=list)
    #: job id -> why it failed (``keep_going``); jobs skipped because an ancestor failed
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    #: sub-workflow jobs that failed because a job in them failed (``keep_going``)
    failed_workflows: list[str] = field(default_factory=list)
    #: jobs whose stage-out ran, in the order it ran (after all jobs of their workflow)
    stage_outs: list[str] = field(default_factory=list)


def _pfn_path(pfn: str) -> Path:
    if not pfn.startswith("file://"):
        raise PegasusRunError(f"only file:// replicas can be staged by the test runner, got {pfn!r}")
    return Path(pfn[len("file://") :])


def _read_output_map(path: Path) -> dict[str, Path]:
    """``outputs.map`` (``LFN PFN site="local"`` lines) -> lfn: destination path."""
    import shlex

    result: dict[str, Path] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                lfn, pfn, *_ = shlex.split(line)
                result[lfn] = _pfn_path(pfn)
    return result


def topological_order(jobs: list[dict], dependencies: list[dict]) -> list[str]:
    """Job ids in an order where every parent precedes its children (Kahn's algorithm)."""
    ids = [job["id"] for job in jobs]
    children: dict[str, list[str]] = {i: [] for i in ids}
    indegree = dict.fromkeys(ids, 0)
    for dep in dependencies:
        for child in dep.get("children", []):
            if dep["id"] not in children or child not in indegree:
                raise PegasusRunError(f"dependency {dep['id']} -> {child} names an unknown job")
            children[dep["id"]].append(child)
            indegree[child] += 1
    ready = deque(i for i in ids if indegree[i] == 0)
    order = []
    while ready:
        current = ready.popleft()
        order.append(current)
        for child in children[current]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if len(order) != len(ids):
        raise PegasusRunError("the workflow's dependencies contain a cycle")
    return order


def run_workflow(
    pegasus_dir: Path,
    work_root: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    exclude: tuple[str, ...] = (),
    keep_going: bool = False,
) -> RunResult:
    """Run the jobs of the Pegasus workflow in ``pegasus_dir``; see the module docstring.

    Like Pegasus's planner with data reuse, a job whose outputs all have replicas
    in the replica catalog is pruned (``result.pruned``). ``exclude`` names jobs not
    to run. With ``keep_going``, a failing job is recorded in ``result.failed`` and
    its descendants in ``result.skipped``, as DAGMan does; otherwise it raises.
    """
    pegasus_dir = Path(pegasus_dir)
    replicas = json.loads((pegasus_dir / "replicas.yml").read_text())
    transformations = json.loads((pegasus_dir / "transformations.yml").read_text())
    context = _Context(
        pegasus_dir=pegasus_dir,
        work_root=Path(work_root),
        replica_paths={r["lfn"]: _pfn_path(r["pfns"][0]["pfn"]) for r in replicas["replicas"]},
        executables={t["name"]: t["sites"][0]["pfn"] for t in transformations["transformations"]},
        destinations=_read_output_map(pegasus_dir / "outputs.map"),
        env=dict(os.environ, **(env or {})),
        timeout=timeout,
        exclude=exclude,
        keep_going=keep_going,
    )
    result = RunResult()
    _run_dag(context, pegasus_dir / "workflow.yml", result)
    return result


@dataclass
class _Context:
    pegasus_dir: Path
    work_root: Path
    replica_paths: dict[str, Path]
    executables: dict[str, str]
    destinations: dict[str, Path]
    env: dict[str, str]
    timeout: float
    exclude: tuple[str, ...]
    keep_going: bool


def _run_dag(context: _Context, path: Path, result: RunResult) -> bool:
    """Run one workflow file as one DAG; True when every node of it succeeded (stage-outs included)."""
    workflow = json.loads(path.read_text())
    jobs = {job["id"]: job for job in workflow["jobs"]}
    parents: dict[str, list[str]] = {job_id: [] for job_id in jobs}
    for dep in workflow.get("jobDependencies", []):
        for child in dep.get("children", []):
            parents.setdefault(child, []).append(dep["id"])
    ok = True
    failed_here: set[str] = set()
    stage_outs: list[dict] = []  # nothing depends on them: they run last
    for job_id in topological_order(workflow["jobs"], workflow.get("jobDependencies", [])):
        job = jobs[job_id]
        outputs = [use["lfn"] for use in job.get("uses", []) if use["type"] == "output"]
        if job_id in context.exclude:
            continue
        if outputs and all(lfn in context.replica_paths for lfn in outputs):
            result.pruned.append(job_id)
            continue
        if any(p in failed_here or p in result.skipped for p in parents.get(job_id, [])):
            result.skipped.append(job_id)
            continue
        if job.get("type") == "pegasusWorkflow":
            if not _run_dag(context, _sub_workflow_path(context, job), result):
                if not context.keep_going:
                    raise PegasusRunError(f"sub-workflow {job_id} failed")
                result.failed_workflows.append(job_id)
                failed_here.add(job_id)
                ok = False
            continue
        try:
            _run_job(
                job,
                context.work_root / job_id,
                context.executables,
                context.replica_paths,
                context.env,
                context.timeout,
                result,
            )
        except PegasusRunError as err:
            if not context.keep_going:
                raise
            result.failed[job_id] = str(err)
            failed_here.add(job_id)
            ok = False
            continue
        if any(use["type"] == "output" and use.get("stageOut") for use in job["uses"]):
            stage_outs.append(job)
        result.order.append(job_id)
    for job in stage_outs:
        for use in job["uses"]:
            if use["type"] == "output" and use.get("stageOut"):
                target = context.destinations.get(use["lfn"], context.pegasus_dir / "outputs" / use["lfn"])
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(result.outputs[use["lfn"]], target)
                result.staged[use["lfn"]] = target
        result.stage_outs.append(job["id"])
    return ok


def _sub_workflow_path(context: _Context, job: dict) -> Path:
    """Where a sub-workflow job's workflow file is: its replica, else next to the workflow."""
    lfn = job["file"]
    return context.replica_paths.get(lfn, context.pegasus_dir / lfn)


def _run_job(
    job: dict,
    workdir: Path,
    executables: dict[str, str],
    replica_paths: dict[str, Path],
    env: dict[str, str],
    timeout: float,
    result: RunResult,
) -> None:
    """Stage in, run, collect the declared outputs of one job (into ``result.outputs``)."""
    job_id = job["id"]
    workdir.mkdir(parents=True, exist_ok=True)
    for use in job["uses"]:
        if use["type"] != "input":
            continue
        source = result.outputs.get(use["lfn"]) or replica_paths.get(use["lfn"])
        if source is None:
            raise PegasusRunError(f"job {job_id}: input {use['lfn']} has no replica and no producer")
        if not source.exists():
            raise PegasusRunError(f"job {job_id}: input {use['lfn']} is missing at {source}")
        shutil.copyfile(source, workdir / use["lfn"])
    if job["name"] not in executables:
        raise PegasusRunError(f"job {job_id}: transformation {job['name']!r} is not in the catalog")
    command = [executables[job["name"]], *[str(a) for a in job["arguments"]]]
    proc = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise PegasusRunError(
            f"job {job_id} exited with {proc.returncode}: {command}\n{proc.stdout}\n{proc.stderr}"
        )
    for use in job["uses"]:
        if use["type"] == "output":
            produced = workdir / use["lfn"]
            if not produced.exists():
                raise PegasusRunError(f"job {job_id} did not produce its declared output {use['lfn']}")
            if use["lfn"] in result.outputs:
                raise PegasusRunError(f"{use['lfn']} is produced by two jobs")
            result.outputs[use["lfn"]] = produced


# -- a small generic workflow whose jobs run a stand-in for run_quantum ---------------------

FAKE_RUN_QUANTUM = '''
"""Stand-in for run_quantum: reads its quanta from a JSON "graph", hashes inputs into outputs."""
import argparse, hashlib, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--graph", required=True)
parser.add_argument("--quantum", action="append", required=True)
parser.add_argument("--job", required=True)
parser.add_argument("--manifest-dir", required=True)
parser.add_argument("--inputs-dir", required=True)
parser.add_argument("--outputs-dir", required=True)
args = parser.parse_args()
graph = json.load(open(args.graph))
files = []
for qid in args.quantum:
    quantum = graph[qid]
    digest = hashlib.sha256(quantum["label"].encode())
    for lfn in sorted(quantum["inputs"]):
        digest.update(lfn.encode())
        digest.update(open(os.path.join(args.inputs_dir, lfn), "rb").read())
    for out in quantum["outputs"]:
        with open(os.path.join(args.outputs_dir, out["lfn"]), "w") as stream:
            stream.write(out["lfn"] + ":" + digest.hexdigest())
        files.append(out)
with open(os.path.join(args.manifest_dir, args.job + ".manifest.json"), "w") as stream:
    json.dump({"job": args.job, "files": files}, stream)
'''

FAKE_FINALIZE = '''
"""Stand-in for bps finalize: moves what the manifests list from staged/ into the datastore, records it."""
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("command")
parser.add_argument("submit_dir")
parser.add_argument("--repo", required=True)
parser.add_argument("--registry", required=True)
args = parser.parse_args()
registry = {}
manifests = os.path.join(args.submit_dir, "manifests")
for name in sorted(os.listdir(manifests)):
    for f in json.load(open(os.path.join(manifests, name)))["files"]:
        target = os.path.join(args.repo, f["path"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(os.path.join(args.submit_dir, "staged", f["lfn"]), target)
        registry[f["path"]] = open(target).read()
json.dump(registry, open(args.registry, "w"), sort_keys=True)
'''


def write_script(path: Path, source: str) -> Path:
    """Write an executable Python script that runs with this interpreter."""
    import sys

    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(0o755)
    return path


def evaluate_directly(graph: dict[str, dict], repo: Path, paths: dict[str, str]) -> dict[str, str]:
    """Compute every output of a stand-in graph in one process (the ``supertask run`` stand-in).

    ``paths`` maps overall-input logical names to datastore paths below ``repo``.
    """
    import hashlib

    contents: dict[str, bytes] = {lfn: (repo / path).read_bytes() for lfn, path in paths.items()}
    for qid in sorted(graph, key=int):
        quantum = graph[qid]
        digest = hashlib.sha256(quantum["label"].encode())
        for lfn in sorted(quantum["inputs"]):
            digest.update(lfn.encode())
            digest.update(contents[lfn])
        for out in quantum["outputs"]:
            contents[out["lfn"]] = (out["lfn"] + ":" + digest.hexdigest()).encode()
    return {lfn: data.decode() for lfn, data in contents.items() if lfn not in paths}


def _entry(wf_file) -> dict[str, str]:
    return {"lfn": wf_file.lfn, "path": wf_file.path}


@dataclass
class Sample:
    """A hand-built generic workflow and what its stand-in jobs need."""

    workflow: object  # bps.workflow.GenericWorkflow
    graph: dict[str, dict]
    repo: Path
    input_paths: dict[str, str]
    registry: Path


def build_sample(root: Path, pegasus: dict | None = None, staging: str = "shared") -> Sample:
    """isr per (visit, detector) -> calib per visit (gathers detectors) -> coadd (gathers all).

    Two detectors of visit 2 are clustered into one job (two quanta in one process),
    so the sample covers single-quantum jobs, a cluster, gathering inputs and a
    final job.
    """
    from bps.workflow import GenericWorkflow, Job, Resources, SiteConfig, WorkflowFile, dataset_lfn

    repo = root / "repo"
    submit = root / "submit"
    submit.mkdir(parents=True)
    rq = write_script(root / "fake_run_quantum", FAKE_RUN_QUANTUM)
    fin = write_script(root / "fake_finalize", FAKE_FINALIZE)
    graph_path = submit / "sample.qgraph"
    site = SiteConfig(name="test-site", wms="pegasus", staging=staging, pegasus=pegasus or {})
    wf = GenericWorkflow("sample.run", str(submit), str(graph_path), str(repo), "u/test/run", site=site)
    graph: dict[str, dict] = {}
    input_paths: dict[str, str] = {}

    def wfile(dtype: str, data_id: dict, producer: str | None = None) -> WorkflowFile:
        lfn = dataset_lfn(dtype, data_id)
        path = f"{dtype}/" + "_".join(f"{k}{v}" for k, v in sorted(data_id.items())) + ".txt"
        return WorkflowFile(lfn, dtype, data_id, path, producer)

    manifest_dir = submit / "manifests"
    manifest_dir.mkdir()

    def args(name: str, *quanta: int) -> list[str]:
        result = ["--graph", str(graph_path)]
        for q in quanta:
            result += ["--quantum", str(q)]
        return result + ["--job", name, "--manifest-dir", str(manifest_dir)]

    qid = 0
    calexp_of: dict[tuple[int, int], WorkflowFile] = {}
    for visit in (1, 2):
        clustered: Job | None = None
        for detector in (1, 2):
            raw = wfile("raw", {"instrument": "Demo", "visit": visit, "detector": detector})
            (repo / raw.path).parent.mkdir(parents=True, exist_ok=True)
            (repo / raw.path).write_text(f"raw {visit} {detector}")
            input_paths[raw.lfn] = raw.path
            qid += 1
            name = f"isr.visit-{visit}.detector-{detector}" if visit == 1 else f"isr.visit-{visit}"
            out = wfile("calexp", {"instrument": "Demo", "visit": visit, "detector": detector}, name)
            graph[str(qid)] = {"label": "isr", "inputs": [raw.lfn], "outputs": [_entry(out)]}
            calexp_of[(visit, detector)] = out
            if visit == 2 and clustered is not None:
                clustered.quantum_ids.append(qid)
                clustered.arguments = args(clustered.name, *clustered.quantum_ids)
                clustered.inputs.append(raw)
                clustered.outputs.append(out)
                continue
            job = Job(
                name,
                "isr",
                [qid],
                args(name, qid),
                resources=Resources(memory_mb=1024 + 512 * detector, cpus=1, disk_mb=500, walltime_s=600),
                inputs=[raw],
                outputs=[out],
                executable=str(rq),
            )
            wf.add_job(job)
            clustered = job if visit == 2 else None
    coadd_inputs = []
    for visit in (1, 2):
        qid += 1
        name = f"calib.visit-{visit}"
        ins = [calexp_of[(visit, d)] for d in (1, 2)]
        out = wfile("calib", {"instrument": "Demo", "visit": visit}, name)
        graph[str(qid)] = {"label": "calib", "inputs": [f.lfn for f in ins], "outputs": [_entry(out)]}
        wf.add_job(
            Job(
                name,
                "calib",
                [qid],
                args(name, qid),
                inputs=ins,
                outputs=[out],
                executable=str(rq),
                throttle="calib",
            ),
            sorted({f.producer for f in ins}),
        )
        coadd_inputs.append(out)
    qid += 1
    out = wfile("coadd", {"skymap": "sky", "tract": 0, "patch": 1}, "coadd.tract-0.patch-1")
    graph[str(qid)] = {"label": "coadd", "inputs": [f.lfn for f in coadd_inputs], "outputs": [_entry(out)]}
    wf.add_job(
        Job(
            out.producer,
            "coadd",
            [qid],
            args(out.producer, qid),
            resources=Resources(memory_mb=4096, cpus=2, disk_mb=1000),
            inputs=coadd_inputs,
            outputs=[out],
            executable=str(rq),
            priority=5,
        ),
        [f.producer for f in coadd_inputs],
    )
    wf.throttles = {"calib": 1}
    registry = root / "registry.json"
    wf.final = Job(
        "finalize",
        "finalize",
        [],
        ["finalize", str(submit), "--repo", str(repo), "--registry", str(registry)],
        executable=str(fin),
    )
    graph_path.write_text(json.dumps(graph))
    return Sample(wf, graph, repo, input_paths, registry)


def throwaway_key() -> str:
    """A file standing in for the staging site's SSH private key: mode 0600, outside ``/tmp``.

    Not under ``/tmp``: HTCondor mounts it privately for each job (``MOUNT_UNDER_SCRATCH``),
    so ``pegasus-plan`` and the site validation refuse a credential there. Removed at exit.
    """
    import atexit
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix=".bps-test-key-", dir=Path.home()))
    atexit.register(shutil.rmtree, directory, True)
    key = directory / "id_staging"
    key.write_text("not a real key\n")
    key.chmod(0o600)
    return str(key)
