"""Write a generic workflow as an HTCondor DAG: the ``.dag``, one submit description per label.

In the style of ``htcondor2.dags`` (a layer of nodes shares one submit description
and differs only by ``VARS``), but streamed straight from the generic workflow so
that 10^6 jobs cost one pass and a handful of files, not one file per job (field
note 9). What each node gets:

- ``JOB`` + ``VARS`` (``bps_args``: the arguments between the label's common prefix
  and suffix; ``bps_log``: its log path stem; ``bps_memory`` / ``bps_cpus`` / ``bps_disk`` only
  when they differ from the label default; ``bps_inputs`` / ``bps_outputs`` for file transfer);
- ``PRIORITY`` and ``CATEGORY`` (throttled by ``MAXJOBS``);
- then ``PARENT ... CHILD`` edges, ``NODE_STATUS_FILE``, ``CONFIG`` and the ``FINAL`` node
  (DAGMan refuses ``RETRY``, ``PRIORITY`` and ``CATEGORY`` on a FINAL node).

No node has a DAGMan ``RETRY`` or a ``SCRIPT``. A job retries inside its own cluster:
``max_retries`` with ``retry_until`` naming the exit codes a retry cannot help
(`bps.exit_codes.NO_RETRY`), so the memory an attempt grew to stays with the job
(`bps.wms.htcondor.memory`), a job removed at the memory cap ends its node without
another attempt, and DAGMan starts the next layer as soon as a job leaves the queue (a
POST script per node cost seconds per layer and crashed DAGMan on ``condor_rm``).

Every path DAGMan reads (``CONFIG``, ``NODE_STATUS_FILE``, the submit descriptions) is
absolute: DAGMan resolves relative ones against the directory ``bps submit`` was run
from, not against the DAG's. The FINAL node passes DAGMan's ``$(DAG_STATUS)`` and
``$(FAILED_COUNT)`` to ``bps finalize``, which exits non-zero when the DAG failed or was
removed; DAGMan's own exit status is the FINAL node's, so it then tells the truth too.

"No work" needs nothing here: ``run_quantum`` leaves a tombstone in place of each output
it cannot make and exits 0 (see `bps.staging`), so file transfer moves tombstones like
any output and the DAG has no rule of its own for it.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import exit_codes
from ...job_environment import JobEnvironment
from ...names import safe_names
from ...slices import job_graph
from ...staging import manifest_path
from ...submit_files import submit_file, write_submit_text
from ...workflow import GenericWorkflow, Job, SiteConfig, WorkflowFile, safe_name
from ...workflow_stream import StreamedJobs
from . import memory, templates
from .layout import UNIT_KEYS, DagLayout, log_dir, unit_subdir
from .quoting import environment_value, join_arguments, vars_value

#: run_quantum options the translator rewrites in transfer mode.
MANIFEST_OPTION = "--manifest-dir"
JOB_OPTION = "--job"
GRAPH_OPTION = "--graph"
#: What the POST script of DAGs written by an older bps turned every no-retry exit code into;
#: today's DAGs have no POST script, but reports of those runs still meet it.
NO_RETRY_SENTINEL = 113
FINAL_NODE = "bps_final"
#: HTCondor's explicit empty file list (an empty value would mean "every new file").
EMPTY_LIST = '""'
RESERVED = {"PARENT", "CHILD", "ALL_NODES", "FINAL", "JOB"}
NODE_STATUS_INTERVAL_S = 60
#: DAGMan's macros for a node's submit description: the DAG's status when the node is
#: submitted (0 ok, 2 a node failed, 4 removed by ``condor_rm``, ...) and its failed nodes.
DAG_STATUS_ARGS = ["--dag-status", "$(DAG_STATUS)", "--failed-count", "$(FAILED_COUNT)"]


@dataclass
class NodeOverrides:
    """Per-node values that win over the label defaults (restart: memory a node grew to)."""

    memory_mb: dict[str, int] = field(default_factory=dict)


@dataclass
class _LabelDefaults:
    label: str
    njobs: int
    memory_mb: int
    cpus: int
    disk_mb: int
    prefix: list[str]
    #: arguments every job of the label ends with (e.g. ``--manifest-dir DIR``), after its own
    suffix: list[str]
    job: Job


def write_dag(
    workflow: GenericWorkflow,
    submit_dir: str | Path | None = None,
    node_overrides: NodeOverrides | None = None,
) -> DagLayout:
    """Write the DAG of ``workflow`` into ``submit_dir`` (default: the workflow's own); return its layout."""
    layout = DagLayout.of(submit_dir or workflow.submit_dir, workflow.name)
    node_overrides = node_overrides or NodeOverrides()
    site = workflow.site
    layout.submit_dir.mkdir(parents=True, exist_ok=True)
    transfer = site.staging == "transfer"
    if transfer:
        layout.staged.mkdir(parents=True, exist_ok=True)
        layout.input_links.mkdir(exist_ok=True)

    graph_arg = os.path.basename(workflow.graph_file) if transfer else workflow.graph_file
    # A streamed workflow's nodes are written from its columns (`_column_node_lines`): no `Job` per job.
    columns = workflow.jobs if isinstance(workflow.jobs, StreamedJobs) else None
    if transfer or node_overrides.memory_mb:
        columns = None
    if columns is not None:
        nodes = _node_names_by_number(columns)
        labels = _column_label_defaults(columns)
    else:
        names = node_names(workflow.jobs)
        labels = _label_defaults(workflow, graph_arg)
    env = _environment(site)
    cap = site.max_memory_mb

    for defaults in labels.values():
        text = _render_job_submit(workflow, layout, defaults, env, cap)
        write_submit_text(layout.submit_file(defaults.label), text)
    _remove_post_script(layout)
    _write_dagman_config(layout, site)
    if workflow.final is not None:
        write_submit_text(layout.final_submit_file, _render_final_submit(workflow, layout, env))

    log_dirs: set[str] = set()
    with submit_file(layout.dag) as out:  # atomically, not synced: `bps.submit_files`
        out.write(f"# DAG of workflow {workflow.name!r}: {len(workflow.jobs)} jobs, labels {list(labels)}\n")
        out.write("# Written by bps.wms.htcondor.translator; see docs/htcondor.md\n")
        out.write(f"CONFIG {layout.config}\n")
        out.write(f"NODE_STATUS_FILE {layout.node_status} {NODE_STATUS_INTERVAL_S}\n")
        for category, limit in sorted(_throttles(workflow).items()):
            out.write(f"MAXJOBS {category} {limit}\n")
        if columns is not None:
            out.writelines(_column_node_lines(workflow, columns, layout, labels, nodes, log_dirs))
            out.writelines(_column_edge_lines(columns, nodes))
        else:
            out.writelines(_node_lines(workflow, layout, labels, names, graph_arg, node_overrides, log_dirs))
            out.writelines(_edge_lines(workflow, names))
        if workflow.final is not None:
            # DAGMan refuses RETRY, PRIORITY and CATEGORY on a FINAL node; its retries are
            # max_retries in its submit description.
            out.write(f"FINAL {FINAL_NODE} {layout.final_submit_file}\n")
    _make_log_dirs(workflow, layout, log_dirs)
    return layout


# -- per-label submit descriptions -----------------------------------------------------------


def _label_defaults(workflow: GenericWorkflow, graph_arg: str) -> dict[str, _LabelDefaults]:
    """Per label: job count, most common resources, common argument prefix and suffix, first job.

    One pass over the jobs holding only per-label running values (a streamed workflow makes
    each job as it is read; a list of every job per label would hold them all). The suffix
    is the common suffix of the jobs' arguments after the label's prefix: the common suffix
    of the whole argument lists, cut to the shortest remainder after the prefix.
    """
    acc: dict[str, _LabelAccumulator] = {}
    for job in workflow.jobs.values():
        a = acc.get(job.label)
        if a is None:
            if safe_name(job.label) == FINAL_NODE:
                raise ValueError(f"job label {job.label!r} is reserved for the final job; rename the label")
            a = acc[job.label] = _LabelAccumulator(job)
        a.add(job, _arguments(job, workflow, graph_arg))
    return {label: a.defaults() for label, a in acc.items()}


class _LabelAccumulator:
    """The running values of `_label_defaults` for one label."""

    def __init__(self, first: Job) -> None:
        self.first = first
        self.njobs = 0
        self.memory: Counter[int] = Counter()
        self.cpus: Counter[int] = Counter()
        self.disk: Counter[int] = Counter()
        self.prefix: list[str] | None = None
        self.suffix: list[str] | None = None  # reversed
        self.shortest = 0

    def add(self, job: Job, args: list[str]) -> None:
        self.njobs += 1
        self.memory[job.resources.memory_mb] += 1
        self.cpus[job.resources.cpus] += 1
        self.disk[job.resources.disk_mb] += 1
        if self.prefix is None or self.suffix is None:
            self.prefix, self.suffix, self.shortest = list(args), list(reversed(args)), len(args)
            return
        self.shortest = min(self.shortest, len(args))
        _cut_to_common(self.prefix, args)
        if self.suffix:
            _cut_to_common(self.suffix, args[::-1])

    def defaults(self) -> _LabelDefaults:
        prefix = self.prefix or []
        room = max(self.shortest - len(prefix), 0)
        suffix = (self.suffix or [])[:room][::-1]
        return _LabelDefaults(
            label=self.first.label,
            njobs=self.njobs,
            memory_mb=self.memory.most_common(1)[0][0],
            cpus=self.cpus.most_common(1)[0][0],
            disk_mb=self.disk.most_common(1)[0][0],
            prefix=prefix,
            suffix=suffix,
            job=self.first,
        )


def _cut_to_common(common: list[str], args: list[str]) -> None:
    """Shorten ``common`` to its common prefix with ``args``."""
    n = 0
    for a, b in zip(common, args, strict=False):
        if a != b:
            break
        n += 1
    del common[n:]


def _common_prefix(arg_lists: Iterable[list[str]]) -> list[str]:
    prefix: list[str] | None = None
    for args in arg_lists:
        if prefix is None:
            prefix = list(args)
            continue
        n = 0
        for a, b in zip(prefix, args, strict=False):
            if a != b:
                break
            n += 1
        del prefix[n:]
        if not prefix:
            break
    return prefix or []


def _arguments(job: Job, workflow: GenericWorkflow, graph_arg: str) -> list[str]:
    """The job's arguments as the job sees them: in transfer mode the graph file (or the
    job's graph slice, `bps.slices`) and the manifest directory are in the scratch
    directory (the job's working directory)."""
    if graph_arg == workflow.graph_file:
        return job.arguments
    args = [graph_arg if a == workflow.graph_file else a for a in job.arguments]
    for i, a in enumerate(args[:-1]):
        if a == MANIFEST_OPTION:
            args[i + 1] = "."
        elif a == GRAPH_OPTION:
            args[i + 1] = os.path.basename(args[i + 1])
    return args


def _graph_of(job: Job, workflow: GenericWorkflow) -> str:
    """The graph file a job reads: its slice with transfer staging, else the workflow's graph."""
    return job_graph(job) or workflow.graph_file


def _manifest_name(job: Job) -> str | None:
    """The manifest file ``run_quantum`` writes for ``job`` (transfer mode brings it back), if any."""
    args = job.arguments
    if MANIFEST_OPTION not in args or JOB_OPTION not in args[:-1]:
        return None
    return manifest_path("", args[args.index(JOB_OPTION) + 1]).name


def _manifest_dir(job: Job) -> str | None:
    args = job.arguments
    return args[args.index(MANIFEST_OPTION) + 1] if MANIFEST_OPTION in args[:-1] else None


def _staging_arguments(workflow: GenericWorkflow) -> list[str]:
    if workflow.site.staging == "transfer":
        # Inputs arrive in the scratch directory under their logical names; outputs written
        # there under theirs are transferred back into <submit_dir>/staged (initialdir).
        return ["--inputs-dir", ".", "--outputs-dir", "."]
    return ["--repo", workflow.repo]


def job_python(site: SiteConfig) -> str:
    """The interpreter jobs use: the site's, else the one running bps (absolute, never found via PATH)."""
    return site.python or os.path.abspath(sys.executable)


def executable_path(job: Job, site: SiteConfig) -> str:
    """Absolute executable: the job's own if absolute, else next to the jobs' python (its venv's bin)."""
    if os.path.isabs(job.executable):
        return job.executable
    return str(Path(job_python(site)).parent / job.executable)


def _environment(site: SiteConfig) -> dict[str, str]:
    env: dict[str, str] = {}
    python = Path(job_python(site))
    env["PATH"] = f"{python.parent}:/usr/local/bin:/usr/bin:/bin"
    if (python.parent.parent / "pyvenv.cfg").exists():
        env["VIRTUAL_ENV"] = str(python.parent.parent)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in site.environment.items()})
    return env


#: The variables DAGMan itself gets from ``condor_submit_dag`` (HTCondor's base list for the
#: DAGMan job, ``src/condor_utils/dagman_utils.cpp``): a node job with ``getenv`` takes its
#: values from DAGMan's environment, i.e. these variables of the submitter's.
DAGMAN_GETENV: tuple[str, ...] = (
    "CONDOR_CONFIG", "_CONDOR_*", "PATH", "PYTHONPATH", "PERL*", "PEGASUS_*", "TZ", "HOME", "USER",
    "LANG", "LC_ALL", "ASAN_OPTIONS", "LSAN_OPTIONS", "BEARER_TOKEN", "BEARER_TOKEN_FILE",
)  # fmt: skip


def job_environment(site: SiteConfig) -> JobEnvironment:
    """The interpreter and complete environment of this site's jobs, as their submit files set them.

    The job templates say ``getenv = false`` and name every variable in ``environment``
    (`_environment`). A site's ``condor.submit`` may add ``getenv``: ``true`` gives jobs
    DAGMan's environment (the submitter's `DAGMAN_GETENV` variables, ``PYTHONPATH``
    among them), a list of names (``*`` patterns) those of them; the ``environment``
    values win over both, as in HTCondor.
    """
    from fnmatch import fnmatchcase

    getenv = str((site.condor.get("submit", {}) or {}).get("getenv", "false")).strip()
    inherited: dict[str, str] = {}
    if getenv.lower() not in ("false", "no", "0", ""):
        dagman = {
            k: v for k, v in os.environ.items() if any(fnmatchcase(k, pattern) for pattern in DAGMAN_GETENV)
        }
        if getenv.lower() in ("true", "yes", "1"):
            inherited = dagman
        else:
            patterns = [p.strip() for p in getenv.replace(",", " ").split() if p.strip()]
            inherited = {k: v for k, v in dagman.items() if any(fnmatchcase(k, p) for p in patterns)}
    return JobEnvironment(
        python=job_python(site),
        env={**inherited, **_environment(site)},
        origin=f"HTCondor: getenv = {getenv or 'false'}, environment from the site config",
    )


def _site_lines(site: SiteConfig) -> str:
    lines = []
    if site.accounting_group:
        lines.append(f"accounting_group = {site.accounting_group}")
    if site.project:
        lines.append(f'+ProjectName = "{site.project}"')
    if site.requirements:
        lines.append(f"requirements = {site.requirements}")
    for key, value in (site.condor.get("submit", {}) or {}).items():
        lines.append(f"{key} = {value}")
    return "\n".join(lines)


def _walltime_line(job: Job) -> str:
    """A job running longer than its walltime is stopped (and then retried or reported)."""
    if not job.resources.walltime_s:
        return ""
    return f"\nallowed_execute_duration = {int(job.resources.walltime_s)}"


def _render_job_submit(
    workflow: GenericWorkflow, layout: DagLayout, d: _LabelDefaults, env: dict[str, str], site_cap: int
) -> str:
    site = workflow.site
    retry = d.job.retry
    policy = memory.MemoryPolicy(
        base_mb=d.memory_mb,
        multiplier=retry.memory_multiplier,
        # Escalating beyond the largest slot would leave the job idle forever.
        max_mb=max(min(retry.memory_max_mb, site_cap), d.memory_mb),
        max_starts=max(retry.retries, 1) + 1,
        held_timeout_s=site.condor.get("held_timeout_s"),
        pool_policy=site.condor.get("memory_policy") or memory.DEFAULT_POOL_POLICY,
    )
    prefix = join_arguments(d.prefix)
    staging_args = join_arguments(_staging_arguments(workflow))
    suffix = join_arguments(d.suffix)
    arguments = " ".join(p for p in (prefix, "$(bps_args)", suffix, staging_args) if p)
    executable = executable_path(d.job, site)
    if site.staging == "transfer":
        # Every declared output comes back, as the product or as its tombstone (no work).
        staging = "\n".join(
            [
                "should_transfer_files = YES",
                "when_to_transfer_output = ON_SUCCESS",
                # the job's graph slice (or the graph), then its input files
                "transfer_input_files = $(bps_graph)$(bps_inputs)",
                "transfer_output_files = $(bps_outputs)",
            ]
        )
        manifest_dir = _manifest_dir(d.job)
        if manifest_dir is not None:
            # The job's manifest comes back with its outputs, into the manifest directory.
            staging += f'\ntransfer_output_remaps = "$(bps_manifest)={manifest_dir}/$(bps_manifest)"'
        initialdir = layout.staged
    else:
        staging = "should_transfer_files = NO"
        initialdir = layout.submit_dir
    return templates.render(
        "job.sub",
        {
            "label": d.label,
            "njobs": d.njobs,
            "executable": executable,
            "arguments": arguments,
            "environment": environment_value(env),
            "initialdir": initialdir,
            "cpus": d.cpus,
            "disk_mb": d.disk_mb,
            "request_memory": memory.request_memory(policy),
            "periodic_release": memory.periodic_release(policy),
            "periodic_remove": memory.periodic_remove(policy),
            "periodic_hold": "\n".join(f"{k} = {v}" for k, v in memory.periodic_hold(policy).items()),
            "retries": retry_commands(d.job),
            "submit_dir": layout.submit_dir,
            "staging": staging,
            "site_lines": _site_lines(site) + _walltime_line(d.job),
            "run": workflow.output_run,
        },
        site.condor.get("templates_dir"),
    )


def _render_final_submit(workflow: GenericWorkflow, layout: DagLayout, env: dict[str, str]) -> str:
    final = workflow.final
    assert final is not None
    return templates.render(
        "final.sub",
        {
            "executable": executable_path(final, workflow.site),
            "arguments": join_arguments(final.arguments) + " " + " ".join(DAG_STATUS_ARGS),
            "retries": final_retry_commands(final),
            "environment": environment_value(env),
            "initialdir": layout.submit_dir,
            "cpus": final.resources.cpus,
            "disk_mb": final.resources.disk_mb,
            "memory_mb": final.resources.memory_mb,
            "log_dir": layout.final_log_dir(final),
            "site_lines": _site_lines(workflow.site),
            "run": workflow.output_run,
        },
        workflow.site.condor.get("templates_dir"),
    )


def _remove_post_script(layout: DagLayout) -> None:
    """A submit directory written by an older bps may hold its POST script: nothing uses it now."""
    layout.post_script.unlink(missing_ok=True)


def retry_commands(job: Job) -> str:
    """``max_retries`` / ``retry_until`` of a job: retries inside the job's own cluster.

    ``retry_until`` names the exit codes a retry cannot help (`bps.exit_codes.NO_RETRY`);
    the job then leaves the queue with its own exit code and DAGMan fails the node.
    A signal death (no ``ExitCode``) is retried. The per-node macro ``bps_retries`` wins,
    so one node can be given more retries than its label."""
    retries = max(int(job.retry.retries), 0)
    codes = sorted(set(job.retry.no_retry_exit_codes) - {exit_codes.SUCCESS})
    lines = [f"max_retries = $(bps_retries:{retries})"]
    if codes:
        lines.append("retry_until = " + " || ".join(f"ExitCode =?= {c}" for c in codes))
    return "\n".join(lines)


def final_retry_commands(job: Job) -> str:
    """Retries of the FINAL node (DAGMan refuses ``RETRY`` on it): ``bps finalize`` is idempotent,
    so a registry that was briefly unreachable is worth a retry; missing outputs, a failed DAG
    and rejected files are outcomes, never retried."""
    if job.retry.retries <= 0:
        return ""
    outcomes = set(job.retry.no_retry_exit_codes) | {
        exit_codes.OUTPUTS_MISSING,
        exit_codes.WORKFLOW_FAILED,
        exit_codes.DATA_ERROR,
        exit_codes.USAGE,
    }
    codes = sorted(outcomes - {exit_codes.SUCCESS})
    return f"max_retries = {int(job.retry.retries)}\nretry_until = " + " || ".join(
        f"ExitCode =?= {c}" for c in codes
    )


def _write_dagman_config(layout: DagLayout, site: SiteConfig) -> None:
    settings = dict(site.condor.get("dagman_config", {}) or {})
    text = templates.render(
        "dagman.config",
        {
            "max_jobs_idle": settings.pop("DAGMAN_MAX_JOBS_IDLE", 1000),
            "max_jobs_submitted": settings.pop("DAGMAN_MAX_JOBS_SUBMITTED", 0),
            "extra": "\n".join(f"{k} = {v}" for k, v in settings.items()),
        },
        site.condor.get("templates_dir"),
    )
    write_submit_text(layout.config, text)


# -- the .dag file -----------------------------------------------------------------------------


def node_names(jobs: Iterable[str]) -> dict[str, str]:
    """Job name -> DAG node name, for job names in the workflow's order (a mapping of jobs: its keys)."""
    names = list(jobs)
    nodes = _nodes_of(names)
    seen: dict[str, str] = {}
    for name, node in zip(names, nodes, strict=True):
        if node in seen:
            raise ValueError(
                f"jobs {seen[node]!r} and {name!r} both become DAG node {node!r}: job names must "
                "stay distinct after replacing characters other than letters, digits, '.', '_', '-'"
            )
        seen[node] = name
    return dict(zip(names, nodes, strict=True))


def _nodes_of(names: Sequence[str]) -> list[str]:
    """The DAG node of each job name: its `safe_name`, with ``job_`` in front where that is a
    DAGMan keyword or the final node's name (`safe_names`: in C, for a million jobs)."""
    nodes = safe_names(names)
    if not RESERVED.isdisjoint(map(str.upper, nodes)) or FINAL_NODE in nodes:
        nodes = [f"job_{node}" if node.upper() in RESERVED or node == FINAL_NODE else node for node in nodes]
    return nodes


def _throttles(workflow: GenericWorkflow) -> dict[str, int]:
    limits = {safe_name(k): int(v) for k, v in workflow.throttles.items()}
    for label, limit in (workflow.site.condor.get("max_jobs_per_label", {}) or {}).items():
        limits.setdefault(safe_name(label), int(limit))
    return limits


def _node_lines(
    workflow: GenericWorkflow,
    layout: DagLayout,
    labels: dict[str, _LabelDefaults],
    names: dict[str, str],
    graph_arg: str,
    overrides: NodeOverrides,
    log_dirs: set[str],
) -> Iterable[str]:
    """The lines of each node; fills ``log_dirs`` with the log directories the nodes use."""
    transfer = workflow.site.staging == "transfer"
    throttles = _throttles(workflow)
    sub_files = {label: str(layout.submit_file(label)) for label in labels}
    staged = str(layout.staged)
    categories: dict[tuple[str | None, str], str | None] = {}
    for name, job in workflow.jobs.items():
        node = names[name]
        d = labels[job.label]
        args = _arguments(job, workflow, graph_arg)
        args = args[len(d.prefix) : len(args) - len(d.suffix)]
        log = log_dir(job.label, job.log_subdir, unit_subdir(job))
        log_dirs.add(log)
        vars_ = [
            f"bps_log={vars_value(log + '/' + node)}",
            f"bps_args={vars_value(join_arguments(args))}",
        ]
        vars_ += _resource_vars(job, d, max(job.resources.memory_mb, overrides.memory_mb.get(name, 0)))
        if transfer:
            inputs = "".join(
                f",{staged}/{f.lfn}"
                if f.producer is not None
                else "," + _input_link(f, layout, workflow.repo)
                for f in job.inputs
            )
            vars_.append(f"bps_graph={vars_value(_graph_of(job, workflow))}")
            vars_.append(f"bps_inputs={vars_value(inputs)}")
            outputs = [f.lfn for f in job.outputs]
            manifest = _manifest_name(job)
            if manifest is not None:
                outputs.append(manifest)
                vars_.append(f"bps_manifest={vars_value(manifest)}")
            # An empty list is "" (the explicit empty list): left empty, HTCondor would
            # bring back every file the job created.
            vars_.append(f"bps_outputs={vars_value(','.join(outputs) or EMPTY_LIST)}")
        lines = [f"JOB {node} {sub_files[job.label]}\n", f"VARS {node} {' '.join(vars_)}\n"]
        if job.priority:
            lines.append(f"PRIORITY {node} {job.priority}\n")
        key = (job.throttle, job.label)
        if key not in categories:
            category = safe_name(job.throttle) if job.throttle else safe_name(job.label)
            categories[key] = category if category in throttles else None
        if categories[key]:
            lines.append(f"CATEGORY {node} {categories[key]}\n")
        yield "".join(lines)


def _resource_vars(job: Job, d: _LabelDefaults, memory_mb: int) -> list[str]:
    """The ``VARS`` of ``job`` whose values differ from its label's submit file (``memory_mb``
    is what the node asks, a restart's override included)."""
    vars_ = []
    if memory_mb != d.memory_mb:
        vars_.append(f'bps_memory="{memory_mb}"')
    if job.resources.cpus != d.cpus:
        vars_.append(f'bps_cpus="{job.resources.cpus}"')
    if job.resources.disk_mb != d.disk_mb:
        vars_.append(f'bps_disk="{job.resources.disk_mb}"')
    if job.retry.retries != d.job.retry.retries:
        vars_.append(f'bps_retries="{max(int(job.retry.retries), 0)}"')
    return vars_


def _input_link(f: WorkflowFile, layout: DagLayout, repo: str) -> str:
    """An overall input, linked under its logical name: HTCondor cannot rename files on input
    transfer, and the job finds its inputs by logical name (produced inputs come back into
    ``staged/`` under theirs)."""
    link = layout.input_links / f.lfn
    if not link.is_symlink():
        target = Path(repo.removeprefix("file://")) / f.path
        try:
            link.symlink_to(target)
        except FileExistsError:
            pass
    return str(link)


def _make_log_dirs(workflow: GenericWorkflow, layout: DagLayout, dirs: set[str]) -> None:
    """HTCondor does not create the directory of ``output``: make each (label, unit) directory once."""
    if workflow.final is not None:
        layout.final_log_dir(workflow.final).mkdir(parents=True, exist_ok=True)
    for d in dirs:
        (layout.submit_dir / d).mkdir(parents=True, exist_ok=True)


def _edge_lines(workflow: GenericWorkflow, names: dict[str, str]) -> Iterable[str]:
    for child, parents in workflow.parents.items():
        if parents:
            yield f"PARENT {' '.join(names[p] for p in parents)} CHILD {names[child]}\n"


# -- the nodes of a streamed workflow, from its columns ---------------------------------------

#: Lines of this many nodes are joined into one string before they are written.
_LINES_CHUNK = 4096
#: Stand for a job's quantum number and name in its label's ``bps_args`` (`_column_node_lines`).
_QUANTUM_MARK, _NAME_MARK = "\x01", "\x02"
#: A job name that `quote_argument` and `vars_value` leave as it is has none of these.
_VARS_ESCAPED = re.compile(r'["\\]')
_SPECIAL_NAME = re.compile(r"[ \t'\"\\\x01\x02]")


def _node_names_by_number(jobs: StreamedJobs) -> list[str]:
    """`node_names` of a streamed workflow, by job number (no dictionary keyed by job name)."""
    c = jobs.columns()
    names = c.names
    nodes = _nodes_of(names)
    if len(set(nodes)) != len(nodes):
        node_names(names[i] for i in c.order)  # raises, naming both jobs
    return nodes


def _column_label_defaults(jobs: StreamedJobs) -> dict[str, _LabelDefaults]:
    """`_label_defaults` of a streamed workflow, from its columns.

    The jobs of a label share their resources and differ in their arguments only by quantum
    number, name and what prepare added (``StreamedJobs.columns().extra``); two jobs with the
    same additions differ in the first two. So the common prefix and suffix of all the
    label's argument lists are those of at most two jobs per distinct addition.
    """
    templates = jobs.label_templates()
    for template in templates.values():
        if safe_name(template.label) == FINAL_NODE:
            raise ValueError(f"job label {template.label!r} is reserved for the final job; rename the label")
    witnesses: dict[tuple[int, tuple[str, ...]], list[int]] = {}
    count = dict.fromkeys(templates, 0)
    c = jobs.columns()
    label_of, extras = c.label_of, c.extra
    for j in c.order:
        label = label_of[j]
        count[label] += 1
        key = (label, extras.get(j, ()))
        found = witnesses.get(key)
        if found is None:
            witnesses[key] = [j]
        elif len(found) < 2:
            found.append(j)
    acc = {label: _LabelAccumulator(template) for label, template in templates.items()}
    for (label, extra), found in witnesses.items():
        for j in found:
            acc[label].add(templates[label], _column_arguments(jobs, j, extra))
    defaults = {}
    for label, a in acc.items():
        d = a.defaults()
        d.njobs = count[label]
        defaults[d.label] = d
    return defaults


def _column_arguments(
    jobs: StreamedJobs, j: int, extra: tuple[str, ...], name: str | None = None
) -> list[str]:
    """Job ``j``'s command line (``name`` in place of its name if given)."""
    args, quantum_at, name_at = jobs.argument_template()
    args[quantum_at] = str(j)
    args[name_at] = jobs.columns().names[j] if name is None else name
    return args + list(extra)


def _column_node_lines(
    workflow: GenericWorkflow,
    jobs: StreamedJobs,
    layout: DagLayout,
    labels: dict[str, _LabelDefaults],
    nodes: list[str],
    log_dirs: set[str],
) -> Iterable[str]:
    """`_node_lines` of a streamed workflow (shared staging, no overrides), the same lines.

    What jobs of a label share is worked out once per label: submit file, the ``VARS``
    beyond ``bps_log`` and ``bps_args``, ``PRIORITY``, ``CATEGORY``; ``bps_args`` once per
    label and addition, with marks where each job's quantum number and name go.
    """
    throttles = _throttles(workflow)
    templates = jobs.label_templates()
    shared: dict[int, tuple[str, str, str, str, str]] = {}
    for index, t in templates.items():
        d = labels[t.label]
        vars_ = _resource_vars(t, d, t.resources.memory_mb)
        category = safe_name(t.throttle) if t.throttle else safe_name(t.label)
        shared[index] = (
            f" {layout.submit_file(t.label)}\nVARS ",
            "".join(" " + v for v in vars_) + "\n",
            f" {t.priority}\n" if t.priority else "",
            f" {category}\n" if category in throttles else "",
            t.log_subdir,
        )
    c = jobs.columns()
    names, label_of, extras = c.names, c.label_of, c.extra
    plain = not _SPECIAL_NAME.search("".join(names))
    # (label, extra) -> its ``bps_args`` value and what follows (`_split_arguments`)
    args_split: dict[tuple[int, tuple[str, ...]], tuple[str, str, str] | None] = {}
    # a node name is `safe_name`'s: nothing in it to escape in a VARS value (checked once)
    escape_nodes = bool(_VARS_ESCAPED.search("".join(nodes)))
    # (label, unit) -> ``bps_log`` up to the node name
    log_text: dict[tuple[int, tuple[str, Any] | None], str] = {}
    lines: list[str] = []
    for j, unit in zip(c.order, jobs.common_values(UNIT_KEYS), strict=True):
        index = label_of[j]
        sub, more, priority, category, log_subdir = shared[index]
        node = nodes[j]
        log = log_text.get((index, unit))
        if log is None:
            label = templates[index].label
            directory = log_dir(label, log_subdir, f"{unit[0]}-{unit[1]}" if unit else "")
            log_dirs.add(directory)
            log = log_text[(index, unit)] = vars_value(directory + "/")[:-1]
        extra = extras.get(j, ())
        try:
            split = args_split[(index, extra)]
        except KeyError:
            d = labels[templates[index].label]
            text = _marked_arguments(jobs, d, extra) if plain else None
            split = args_split[(index, extra)] = _split_arguments(text, more)
        if split is not None and not escape_nodes:
            head, middle, tail = split
            line = f'JOB {node}{sub}{node} bps_log={log}{node}" bps_args={head}{j}{middle}{names[j]}{tail}'
        else:
            d = labels[templates[index].label]
            full = _column_arguments(jobs, j, extra)
            args = vars_value(join_arguments(full[len(d.prefix) : len(full) - len(d.suffix)]))
            log += vars_value(node)[1:] if escape_nodes else node + '"'
            line = f"JOB {node}{sub}{node} bps_log={log} bps_args={args}{more}"
        if priority:
            line += f"PRIORITY {node}{priority}"
        if category:
            line += f"CATEGORY {node}{category}"
        lines.append(line)
        if len(lines) >= _LINES_CHUNK:
            yield "".join(lines)
            lines.clear()
    yield "".join(lines)


def _split_arguments(text: str | None, more: str) -> tuple[str, str, str] | None:
    """``bps_args`` marked by `_marked_arguments` as the text before the quantum number, between
    it and the job name, and after the name (with ``more``, what follows on the line); None
    unless the number's mark comes once, then the name's once.

    The line of each job is then one format of its parts, not two replacements in the text.
    """
    if text is None or text.count(_QUANTUM_MARK) != 1 or text.count(_NAME_MARK) != 1:
        return None
    head, rest = text.split(_QUANTUM_MARK)
    if _NAME_MARK not in rest:
        return None
    middle, tail = rest.split(_NAME_MARK)
    return head, middle, tail + more


def _marked_arguments(jobs: StreamedJobs, d: _LabelDefaults, extra: tuple[str, ...]) -> str | None:
    """The ``bps_args`` value of the label's jobs with ``extra``, marks for quantum number and name;
    None when an argument holds a mark itself."""
    full = _column_arguments(jobs, 0, extra, name=_NAME_MARK)
    _, quantum_at, name_at = jobs.argument_template()
    full[quantum_at] = _QUANTUM_MARK
    if any(
        _QUANTUM_MARK in a or _NAME_MARK in a for i, a in enumerate(full) if i not in (quantum_at, name_at)
    ):
        return None
    return vars_value(join_arguments(full[len(d.prefix) : len(full) - len(d.suffix)]))


def _column_edge_lines(jobs: StreamedJobs, nodes: list[str]) -> Iterable[str]:
    """`_edge_lines` of a streamed workflow, by job number."""
    lines: list[str] = []
    c = jobs.columns()
    par_start, par_jobs = c.par_start, c.par_jobs
    for j in c.order:
        parents = par_jobs[par_start[j] : par_start[j + 1]]
        if parents:
            lines.append(f"PARENT {' '.join(map(nodes.__getitem__, parents))} CHILD {nodes[j]}\n")
            if len(lines) >= _LINES_CHUNK:
                yield "".join(lines)
                lines.clear()
    yield "".join(lines)
