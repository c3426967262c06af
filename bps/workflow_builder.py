"""Build the `~bps.workflow.GenericWorkflow` from the quanta of a saved QuantumGraph.

One job per cluster (see `bps.clustering`; an unclustered quantum is a cluster of
one). A job's parents are the jobs that make its inputs; its ``inputs`` are the
files it reads but does not make, its ``outputs`` everything it makes. Paths are
computed once here with the datastore's own templates, so translators and the
final job never have to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clustering import ClusterRule, QuantumLike, cluster_quanta, order_clusters
from .workflow import GenericWorkflow, Job, Resources, RetryPolicy, SiteConfig, WorkflowFile, dataset_lfn

#: dataset (with ``datasetType``, ``dataId``) and its RUN -> path relative to the datastore root
PathFunction = Callable[[Any, str], str]

MANIFEST_DIR = "manifests"
LOG_DIR = "logs"


@dataclass
class BuildOptions:
    """Everything about jobs that comes from the submit configuration."""

    name: str
    submit_dir: str
    graph_file: str
    repo: str
    output_run: str
    site: SiteConfig = field(default_factory=SiteConfig)
    rules: Sequence[ClusterRule] = ()
    resources_for: Callable[[str], Resources] = lambda label: Resources()
    #: resources set for a clustering rule's name: its jobs ask these, not their labels' combined
    cluster_resources: dict[str, Resources] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    throttles: dict[str, int] = field(default_factory=dict)
    final_resources: Resources = field(default_factory=Resources)
    final_retries: int = 2
    final_batch_size: int = 5000


def build_workflow(
    quanta: Iterable[QuantumLike], options: BuildOptions, path_of: PathFunction
) -> GenericWorkflow:
    """Turn quanta (in dependency order) into a generic workflow.

    Parameters
    ----------
    quanta
        The graph's quanta with their ids; inputs that no quantum makes must carry
        the RUN they were found in (``dataset.run``) so their path is known.
    options
        Names, resources, retries, throttles and clustering rules.
    path_of
        The datastore's path of a dataset in a RUN, relative to the datastore root.
    """
    quanta = list(quanta)
    by_id = {q.id: q for q in quanta}
    clusters = cluster_quanta(quanta, options.rules)
    job_of_quantum = {qid: c.name for c in clusters for qid in c.quantum_ids}
    producer: dict[tuple[str, Any], str] = {}
    for q in quanta:
        for datasets in q.outputs.values():
            for ds in datasets:
                producer[_key(ds)] = job_of_quantum[q.id]
    parents: dict[str, set[str]] = {}
    for cluster in clusters:
        deps: set[str] = set()
        for qid in cluster.quantum_ids:
            for datasets in by_id[qid].inputs.values():
                for ds in datasets:
                    made_by = producer.get(_key(ds))
                    if made_by is not None and made_by != cluster.name:
                        deps.add(made_by)
        parents[cluster.name] = deps
    order = order_clusters(clusters, parents)

    wf = GenericWorkflow(
        name=options.name,
        submit_dir=options.submit_dir,
        graph_file=options.graph_file,
        repo=options.repo,
        output_run=options.output_run,
        site=options.site,
        throttles=dict(options.throttles),
    )
    manifest_dir = str(Path(options.submit_dir) / MANIFEST_DIR)
    by_name = {c.name: c for c in clusters}
    resources_of = {q.taskLabel: options.resources_for(q.taskLabel) for q in quanta}
    files: dict[tuple[str, Any], WorkflowFile] = {}
    # Jobs of one label share these (read-only) values: 10^6 jobs, a handful of labels.
    log_subdirs: dict[str, str] = {}
    tags: dict[str, dict[str, str]] = {}
    for name in order:
        cluster = by_name[name]
        members = [by_id[qid] for qid in cluster.quantum_ids]
        inputs, outputs = _files(members, name, producer, options.output_run, path_of, files)
        arguments = ["--graph", options.graph_file]
        for qid in cluster.quantum_ids:
            arguments += ["--quantum", str(qid)]
        arguments += ["--job", name, "--manifest-dir", manifest_dir]
        job = Job(
            name=name,
            label=cluster.label,
            quantum_ids=list(cluster.quantum_ids),
            arguments=arguments,
            resources=options.cluster_resources.get(cluster.label)
            or _combine([resources_of[q.taskLabel] for q in members]),
            retry=options.retry,
            inputs=inputs,
            outputs=outputs,
            log_subdir=log_subdirs.setdefault(cluster.label, f"{LOG_DIR}/{cluster.label}"),
            throttle=cluster.label if cluster.label in options.throttles else None,
            tags=tags.setdefault(task_labels := ",".join(cluster.task_labels), {"task_labels": task_labels}),
        )
        wf.add_job(job, sorted(parents[name]))
    wf.final = final_job(options)
    return wf


def final_job(options: BuildOptions) -> Job:
    """The registration job (``bps finalize``) of a workflow built with ``options``."""
    return Job(
        name="finalize",
        label="finalize",
        quantum_ids=[],
        arguments=["finalize", options.submit_dir, "--batch-size", str(options.final_batch_size)],
        resources=options.final_resources,
        retry=RetryPolicy(
            retries=options.final_retries, no_retry_exit_codes=options.retry.no_retry_exit_codes
        ),
        log_subdir=LOG_DIR,
        executable="bps",
    )


def _key(dataset: Any) -> tuple[str, Any]:
    return (dataset.datasetType.name, dataset.dataId)


def _files(
    members: list[QuantumLike],
    job_name: str,
    producer: dict[tuple[str, Any], str],
    output_run: str,
    path_of: PathFunction,
    files: dict[tuple[str, Any], WorkflowFile],
) -> tuple[list[WorkflowFile], list[WorkflowFile]]:
    """The files a job reads (made elsewhere) and makes.

    ``files`` holds one `WorkflowFile` per dataset for the whole workflow: an output and
    the same dataset read by later jobs are one (frozen) object, its path and logical
    file name computed once.
    """
    inputs: dict[tuple[str, Any], WorkflowFile] = {}
    outputs: dict[tuple[str, Any], WorkflowFile] = {}
    for q in members:
        for datasets in q.outputs.values():
            for ds in datasets:
                key = _key(ds)
                outputs[key] = _shared_file(files, key, ds, output_run, job_name, path_of)
    for q in members:
        for datasets in q.inputs.values():
            for ds in datasets:
                key = _key(ds)
                if key in outputs or key in inputs:
                    continue
                made_by = producer.get(key)
                if made_by is None:
                    if not ds.run:
                        raise ValueError(
                            f"input {ds!r} of {q!r} is made by no quantum and has no RUN: the graph must "
                            "record where each overall input was found; rebuild it"
                        )
                    inputs[key] = _shared_file(files, key, ds, ds.run, None, path_of)
                else:
                    inputs[key] = _shared_file(files, key, ds, output_run, made_by, path_of)
    return list(inputs.values()), list(outputs.values())


def _shared_file(
    files: dict[tuple[str, Any], WorkflowFile],
    key: tuple[str, Any],
    dataset: Any,
    run: str,
    producer: str | None,
    path_of: PathFunction,
) -> WorkflowFile:
    found = files.get(key)
    if found is None:
        found = files[key] = _file(dataset, run, producer, path_of)
    return found


def _file(dataset: Any, run: str, producer: str | None, path_of: PathFunction) -> WorkflowFile:
    data_id = dict(dataset.dataId)
    return WorkflowFile(
        lfn=dataset_lfn(dataset.datasetType.name, data_id),
        dataset_type=dataset.datasetType.name,
        data_id=data_id,
        path=path_of(dataset, run),
        producer=producer,
    )


def _combine(resources: list[Resources]) -> Resources:
    """A cluster runs its quanta one after another: the largest memory/cpus/disk, the summed walltime."""
    if not resources:
        return Resources()
    walltimes = [r.walltime_s for r in resources]
    return Resources(
        memory_mb=max(r.memory_mb for r in resources),
        cpus=max(r.cpus for r in resources),
        disk_mb=max(r.disk_mb for r in resources),
        walltime_s=None if any(w is None for w in walltimes) else sum(w for w in walltimes if w is not None),
    )
