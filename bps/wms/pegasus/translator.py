"""Generic workflow -> Pegasus 5 abstract workflow, catalogs and properties.

One Pegasus job per generic job, running its transformation (``run_quantum``)
with the graph file and its quantum ids; datasets are Pegasus files named by their
logical file names (`bps.workflow.dataset_lfn`); dependencies are exactly the
generic workflow's (Pegasus's own inference from files is switched off, so the two
cannot drift apart). Pegasus stages each job's inputs into its working directory
and its outputs out, so every job gets ``--inputs-dir . --outputs-dir .``.

Outputs are staged out with Pegasus's *Replica* output mapper: ``outputs.map``
sends every dataset to ``<submit_dir>/staged/<lfn>`` and every job's manifest
(``--manifest-dir .`` inside the job) to ``<submit_dir>/manifests``: the layout of
file-transfer staging that ``bps finalize`` reads, verifies against the manifests
and moves atomically into the datastore, so no half-transferred file is ever
registered.

Two workflows are written. ``compute.yml`` holds the compute jobs; ``workflow.yml``
(what ``pegasus-plan`` plans) holds two jobs: that compute workflow as a Pegasus
*sub-workflow* and, as its child, the final (registration) job. The planner adds
a ``stage_out_*`` job per compute job as a child of that job only, never as a
parent of anything we declare: neither a dependency on the compute jobs nor
listing every output as an input of the final job orders it after stage-out
(Pegasus 5.1.2 planned and ran it while outputs were still being staged, and
copied every listed output into the final job's sandbox). The sub-workflow's
DAG node ends only when every job of the compute workflow, its stage-outs
included, has ended, so the final job runs after the last stage-out. It declares
no files: it reads what stage-out put in ``staged/`` and ``manifests/``, and
Pegasus copies nothing for it. Pegasus has no "always run" node, so when the
workflow stops partway the final job does not run; what succeeded is staged
already and ``bps finalize <submit_dir>`` registers it by hand
(``docs/pegasus.md``). The final job has no DAGMan retries: its exit status
(``OUTPUTS_MISSING`` when an output is missing) is the run's verdict, and a retry
could only hide it.

Memory escalation: every compute job also gets the ``condor`` profiles
``request_memory``, ``periodic_release`` and ``periodic_remove`` that the HTCondor
translator writes (`bps.wms.htcondor.memory`), which ``pegasus-plan`` copies into
the job's submit description: after a memory hold the job releases itself with a
larger request, up to the cap, and is removed at the cap. The base request is a
literal (Pegasus has no per-node ``VARS``); the ``pegasus`` ``memory`` profile is
kept, and the ``condor`` ``request_memory`` profile wins over it in the submit file.

Speed and memory: the compute workflow and the replica catalog, which grow with the
workflow, are Pegasus's documented formats written directly, one job or replica at a
time (`bps.wms.pegasus.document`): the ``Pegasus.api`` objects of 10^6 jobs would not fit
a prepare's memory, and its YAML writer alone takes about 50 s for 10^5 jobs. The small
documents (the root workflow, the site and transformation catalogs) are built with the
public ``Pegasus.api``. See ``benchmarks/bench_pegasus_translate.py``. The streamed
workflow of an unclustered prepare (`bps.workflow_stream`) has those documents encoded
straight from its columns instead (`bps.wms.pegasus.streamed`): the same bytes, without
an object per job.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
from collections.abc import Container, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from Pegasus.api import (
    File,
    Namespace,
    Properties,
    SiteCatalog,
    SubWorkflow,
    TransformationCatalog,
)
from Pegasus.api import Job as PegasusJob
from Pegasus.api import Workflow as PegasusWorkflow

from supertask.gc_pause import gc_paused

from ...submit_files import write_submit_text
from ...workflow import GenericWorkflow, Job
from ..base import WmsError
from ..htcondor import memory  # expression strings only: no HTCondor bindings imported
from . import catalogs
from .document import ReplicaDocument, WorkflowDocument, api_document, atomic_write, compact
from .settings import DataConfiguration, PegasusSettings, load_settings

WORKFLOW_FILE = "workflow.yml"
#: The compute jobs, planned by Pegasus as a sub-workflow of ``WORKFLOW_FILE``.
COMPUTE_FILE = "compute.yml"
#: Pegasus id of the sub-workflow job in ``WORKFLOW_FILE`` (its DAG node is ``pegasus-plan_<id>``).
COMPUTE_JOB_ID = "compute_workflow"
#: Label of the sub-workflow job in reports.
COMPUTE_LABEL = "(pegasus sub-workflow)"
#: Where each output is staged out to (Pegasus "File" replica format, read by the Replica mapper).
OUTPUT_MAP_FILE = catalogs.OUTPUT_MAP_FILE
#: Pegasus job id -> generic job name and label, for reports.
JOB_MAP_FILE = "job_map.json"
#: The exact planner command, so a directory prepared without Pegasus can be planned later.
PLAN_SCRIPT = "plan.sh"
#: Where stage-out leaves datasets, by lfn, for ``bps finalize`` (``bps.finalize.STAGED_DIR``).
STAGED_DIR = "staged"
#: Where the Pegasus files live inside the submit directory.
PEGASUS_SUBDIR = "pegasus"
#: The staging options every Pegasus job gets: Pegasus has put the inputs in the cwd.
STAGING_ARGS = ("--inputs-dir", ".", "--outputs-dir", ".")

_ID_UNSAFE = re.compile(r"[^0-9A-Za-z_-]+")
_NEEDS_QUOTES = re.compile(r'[\s"]')


def pegasus_id(name: str) -> str:
    """A Pegasus node id for a job name (``^[-0-9a-zA-Z_]+$``: no dots).

    Purely numeric ids get a prefix: YAML readers would turn them into numbers.
    """
    ident = _ID_UNSAFE.sub("_", name).strip("_") or "job"
    return f"j{ident}" if ident.isdigit() else ident


def pegasus_name(name: str) -> str:
    """A workflow name Pegasus accepts (a file-name-safe string without dots)."""
    return _ID_UNSAFE.sub("_", name).strip("_") or "workflow"


@dataclass
class PegasusPlan:
    """Everything the translator makes for one generic workflow, before writing.

    ``workflow`` is the compute workflow (``compute.yml``, its jobs produced from the
    generic workflow when written), ``root`` the workflow that is planned
    (``workflow.yml``): the compute workflow as a sub-workflow, then the final job.
    """

    workflow: WorkflowDocument
    root: PegasusWorkflow
    replica_catalog: ReplicaDocument
    transformation_catalog: TransformationCatalog
    site_catalog: SiteCatalog
    properties: Properties
    settings: PegasusSettings
    data_configuration: DataConfiguration
    graph_lfn: str
    #: Pegasus id -> {"name": generic job name, "label": task label}
    job_map: Mapping[str, dict[str, str]] = field(default_factory=dict)
    final_id: str | None = None
    #: Pegasus id of the compute sub-workflow's job in ``root``
    compute_id: str = COMPUTE_JOB_ID
    #: output lfn -> absolute path it is staged out to
    output_locations: Mapping[str, str] = field(default_factory=dict)
    #: dataset output lfn -> its final datastore path (where finalize moves it)
    datastore_locations: dict[str, str] = field(default_factory=dict)


class OutputLocations(Mapping[str, str]):
    """Output lfn -> the absolute path it is staged out to (``directory/lfn``), joined when read.

    Holds the directory of each (a handful of shared strings) instead of a path per output:
    10^6 jobs have 2 * 10^6 outputs with their manifests.
    """

    def __init__(self) -> None:
        self._dirs: dict[str, str] = {}

    def add(self, lfn: str, directory: str) -> None:
        self._dirs[lfn] = directory

    def __getitem__(self, lfn: str) -> str:
        return os.path.join(self._dirs[lfn], lfn)

    def __iter__(self) -> Iterator[str]:
        return iter(self._dirs)

    def __len__(self) -> int:
        return len(self._dirs)

    def __contains__(self, lfn: object) -> bool:
        return lfn in self._dirs


class JobMap(MutableMapping[str, dict[str, str]]):
    """Pegasus id -> ``{"name": generic job name, "label": label}``, kept as pairs.

    A dictionary per job is about 200 bytes more than a pair; 10^6 jobs have 10^6 of them.
    Each entry read is a new dictionary (changing it changes nothing here).
    """

    def __init__(self) -> None:
        self._pairs: dict[str, tuple[str, str]] = {}

    def __getitem__(self, pid: str) -> dict[str, str]:
        name, label = self._pairs[pid]
        return {"name": name, "label": label}

    def __setitem__(self, pid: str, entry: dict[str, str]) -> None:
        if set(entry) != {"name", "label"}:
            raise ValueError(f"a job map entry has a name and a label, not {sorted(entry)}")
        self._pairs[pid] = (entry["name"], entry["label"])

    def __delitem__(self, pid: str) -> None:
        del self._pairs[pid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __contains__(self, pid: object) -> bool:
        return pid in self._pairs


def translate(
    workflow: GenericWorkflow, pegasus_dir: Path | None = None, *, datastore_locations: bool = True
) -> PegasusPlan:
    """Build the Pegasus workflow, catalogs and properties of ``workflow``.

    Parameters
    ----------
    workflow : `~bps.workflow.GenericWorkflow`
        The generic workflow; only it and its site config are read.
    pegasus_dir : `~pathlib.Path`, optional
        The directory the files will be written to (``<submit_dir>/pegasus`` by
        default); the local site's scratch and output directories live under it.
    datastore_locations : `bool`, optional
        Fill ``PegasusPlan.datastore_locations`` (what a restart looks for); a first
        prepare does not need it, and at 10^6 outputs it is a few hundred MB.

    Raises
    ------
    WmsError
        When the site config's ``pegasus`` section is invalid.
    """
    pegasus_dir = Path(pegasus_dir or Path(workflow.submit_dir) / PEGASUS_SUBDIR).absolute()
    settings, data_configuration = load_settings(workflow.site)
    with gc_paused(), _quiet_api():
        return _translate(workflow, pegasus_dir, settings, data_configuration, datastore_locations)


@contextlib.contextmanager
def _quiet_api() -> Iterator[None]:
    """Silence the API's INFO line per added job (10^5 lines on a verbose ``bps`` run)."""
    api_log = logging.getLogger("Pegasus.api.workflow")
    level = api_log.level
    api_log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        api_log.setLevel(level)


def _translate(
    workflow: GenericWorkflow,
    pegasus_dir: Path,
    settings: PegasusSettings,
    data_configuration: DataConfiguration,
    with_datastore: bool = True,
) -> PegasusPlan:
    if hasattr(workflow.jobs, "columns"):  # a streamed workflow (`bps.workflow_stream`)
        from .streamed import translate_streamed

        plan = translate_streamed(workflow, pegasus_dir, settings, data_configuration, with_datastore)
        if plan is not None:
            return plan
    graph_lfn = _graph_lfn(workflow.graph_file)
    job_map = JobMap()
    pids: dict[str, str] = {}  # generic job name -> Pegasus id
    graph_args = _graph_arguments(workflow.graph_file, graph_lfn)
    root_dir = str(catalogs.repo_root(workflow.repo))
    staged = os.path.join(str(Path(workflow.submit_dir).absolute()), STAGED_DIR)
    locations = OutputLocations()
    datastore: dict[str, str] = {}
    input_locations = _InputLocations()

    #: the jobs' graph slices (transfer staging, `bps.slices`): path -> logical name
    slices: dict[str, str] = {}
    for name, job in workflow.jobs.items():
        pid = _unique_id(pegasus_id(name), job_map)
        job_map[pid] = {"name": name, "label": job.label}
        pids[name] = pid
        graph = _graph_value(job)
        if graph is not None and graph not in graph_args and graph not in slices:
            slices[graph] = _graph_lfn(graph)
        for wf_file in job.outputs:
            locations.add(wf_file.lfn, staged)
            if with_datastore:
                datastore[wf_file.lfn] = os.path.join(root_dir, wf_file.path)
        _, manifest = _job_arguments(job, graph_args, input_locations)
        if manifest is not None:
            manifest_dir, manifest_lfn = manifest
            if manifest_lfn in locations:
                raise WmsError(
                    f"job {job.name!r}: its manifest name {manifest_lfn!r} is already the name of another "
                    "output of the workflow; job names must not end like dataset file names"
                )
            locations.add(manifest_lfn, manifest_dir)

    graph_args.update(slices)
    site_cap = workflow.site.max_memory_mb

    def job_documents() -> Iterator[dict[str, Any]]:
        for name, job in workflow.jobs.items():
            yield _job_document(job, pids[name], graph_lfn, graph_args, site_cap, settings.held_timeout_s)

    def dependencies() -> Iterator[tuple[str, list[str]]]:
        # Keyed by parent in order of first appearance, as Pegasus.api's add_dependency keeps them.
        children: dict[str, list[str]] = {}
        for name, parents in workflow.parents.items():
            for parent in parents:
                children.setdefault(pids[parent], []).append(pids[name])
        for parent, kids in children.items():
            yield parent, sorted(kids)

    compute = WorkflowDocument(
        name=pegasus_name(workflow.name) + "-compute",
        metadata={"output_run": workflow.output_run, "generic_name": workflow.name},
        jobs=job_documents,
        dependencies=dependencies,
    )

    final_id = None
    if workflow.final is not None:
        final_id = _unique_id(pegasus_id(workflow.final.name), job_map)
        job_map[final_id] = {"name": workflow.final.name, "label": workflow.final.label}
    # Not in the job map (it is no generic job): reports know its node by Pegasus's prefix.
    compute_id = _unique_id(COMPUTE_JOB_ID, job_map)
    root = root_workflow(
        workflow, settings, data_configuration, pegasus_dir, compute_id, final_id, graph_args, input_locations
    )

    replica_catalog = catalogs.build_replica_catalog(
        workflow,
        graph_lfn,
        settings.input_site,
        input_locations.paths,
        slices={lfn: path for path, lfn in slices.items()},
    )
    # The compute workflow is an input of the planned one: Pegasus finds it on the submit host.
    replica_catalog.add_replica("local", COMPUTE_FILE, catalogs.file_url(pegasus_dir / COMPUTE_FILE))
    return PegasusPlan(
        workflow=compute,
        root=root,
        replica_catalog=replica_catalog,
        transformation_catalog=catalogs.build_transformation_catalog(workflow, settings),
        site_catalog=catalogs.build_site_catalog(workflow, settings, data_configuration, pegasus_dir),
        properties=catalogs.build_properties(workflow, settings, data_configuration, pegasus_dir),
        settings=settings,
        data_configuration=data_configuration,
        graph_lfn=graph_lfn,
        job_map=job_map,
        final_id=final_id,
        compute_id=compute_id,
        output_locations=locations,
        datastore_locations=datastore,
    )


def root_workflow(
    workflow: GenericWorkflow,
    settings: PegasusSettings,
    data_configuration: DataConfiguration,
    pegasus_dir: Path,
    compute_id: str,
    final_id: str | None,
    graph_args: dict[str, str],
    input_locations: _InputLocations | None = None,
) -> PegasusWorkflow:
    """``workflow.yml``: the compute workflow as a sub-workflow, then the final job (``final_id``)."""
    root = PegasusWorkflow(pegasus_name(workflow.name), infer_dependencies=False)
    root.add_metadata(output_run=workflow.output_run, generic_name=workflow.name)
    sub = SubWorkflow(File(COMPUTE_FILE), is_planned=False, _id=compute_id, node_label=COMPUTE_LABEL)
    sub.add_args(*compute_planner_arguments(settings, data_configuration, pegasus_dir))
    # The compute jobs carry their own retries; a retry of the whole sub-workflow would add more.
    sub.add_dagman_profile(retry=0)
    root.add_jobs(sub)

    if workflow.final is not None:
        final_job = workflow.final
        arguments, _ = _job_arguments(final_job, graph_args, input_locations)
        final = PegasusJob(
            _transformation_name(final_job.executable), _id=final_id, node_label=final_job.label
        )
        final.add_args(*arguments)
        # It reads staged/ and manifests/ itself and declares no files: a declared file
        # would only make Pegasus copy it.
        final.add_profiles(Namespace.PEGASUS, **_pegasus_profile(final_job))
        # Its exit status is the run's verdict (OUTPUTS_MISSING); a retry could only hide it.
        final.add_dagman_profile(retry=0, priority=final_job.priority or None)
        # The registry is reached from the submit host; run the final job there.
        final.add_selector_profile(execution_site="local")
        root.add_jobs(final)
        root.add_dependency(final, parents=[sub])
    return root


def _graph_lfn(graph_file: str) -> str:
    name = Path(graph_file).name
    if not name:
        raise WmsError(f"graph file {graph_file!r} has no file name; pass the path of the .qgraph file")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _graph_arguments(graph_file: str, graph_lfn: str) -> dict[str, str]:
    """Spellings of the graph path that may appear in arguments -> the staged name."""
    spellings = {graph_file, str(Path(graph_file).absolute())}
    try:
        spellings.add(str(Path(graph_file).resolve()))
    except OSError:
        pass
    return dict.fromkeys(spellings, graph_lfn)


def _unique_id(candidate: str, taken: Container[str]) -> str:
    if candidate not in taken:
        return candidate
    n = 2
    while f"{candidate}-{n}" in taken:
        n += 1
    return f"{candidate}-{n}"


def _job_arguments(
    job: Job, graph_args: dict[str, str], input_locations: _InputLocations | None = None
) -> tuple[list[str], tuple[str, str] | None]:
    """A job's arguments as its Pegasus job gets them, and its manifest's ``(directory, lfn)``.

    The graph path becomes its staged name. A ``--manifest-dir DIR`` argument becomes
    ``--manifest-dir .`` and the job's manifest one of its outputs, staged out to ``DIR``,
    so manifests reach the submit host however data moves. An ``--input-locations FILE``
    argument (overall inputs stored off their template path) is dropped, since Pegasus
    stages those inputs by name, and its paths go to ``input_locations`` (when given) for
    the replica catalog. ``--input-checks FILE`` is a submit-host file that
    Pegasus does not stage: dropped, so those inputs are not verified there.
    """
    return pegasus_arguments(job.arguments, graph_args, input_locations)


def pegasus_arguments(
    job_arguments: list[str], graph_args: dict[str, str], input_locations: _InputLocations | None = None
) -> tuple[list[str], tuple[str, str] | None]:
    """`_job_arguments` of a job whose arguments are ``job_arguments``."""
    arguments = _rewrite_arguments(job_arguments, graph_args)
    if "--input-locations" in arguments:
        index = arguments.index("--input-locations")
        if input_locations is not None and index + 1 < len(arguments):
            input_locations.read(arguments[index + 1])
        del arguments[index : index + 2]
    if "--input-checks" in arguments:
        index = arguments.index("--input-checks")
        del arguments[index : index + 2]
    manifest = _manifest_output(arguments)
    if manifest is None:
        return arguments, None
    index, manifest_dir, manifest_lfn = manifest
    arguments[index] = "."
    return arguments, (manifest_dir, manifest_lfn)


def _job_document(
    job: Job,
    pid: str,
    graph_lfn: str,
    graph_args: dict[str, str],
    site_cap: int,
    held_timeout_s: int | None,
) -> dict[str, Any]:
    """The workflow-format document of one compute job (what ``Pegasus.api.Job`` writes).

    Its uses are sorted by name (the file is reproducible); its profiles are the
    ``condor`` memory escalation, the ``dagman`` retries, throttle category and
    priority, and the ``pegasus`` resources.
    """
    arguments, manifest = _job_arguments(job, graph_args)
    arguments += STAGING_ARGS
    graph = _graph_value(job)
    job_graph_lfn = graph_args.get(graph, graph_lfn) if graph is not None else graph_lfn
    # the graph file the job reads: its slice with transfer staging, else the graph
    uses: dict[str, dict[str, Any]] = {job_graph_lfn: input_use(job_graph_lfn)}
    for wf_file in job.inputs:
        if wf_file.lfn not in uses:
            uses[wf_file.lfn] = input_use(wf_file.lfn)
    outputs = [f.lfn for f in job.outputs]
    if manifest is not None:
        outputs.append(manifest[1])
    for lfn in outputs:
        if lfn in uses and uses[lfn]["type"] == "input":
            raise WmsError(f"job {job.name!r} both reads and makes {lfn!r}; rebuild the workflow")
        uses[lfn] = output_use(lfn)
    dagman: dict[str, Any] = {"RETRY": job.retry.retries}
    if job.throttle:
        dagman["CATEGORY"] = job.throttle
    if job.priority:
        dagman["PRIORITY"] = job.priority
    return {
        "type": "job",
        "name": _transformation_name(job.executable),
        "id": pid,
        "nodeLabel": job.label,
        "arguments": arguments,
        "uses": [uses[lfn] for lfn in sorted(uses)],
        "profiles": {
            "condor": memory_profiles(job, site_cap, held_timeout_s),
            "dagman": dagman,
            "pegasus": _pegasus_profile(job),
        },
    }


def input_use(lfn: str) -> dict[str, Any]:
    """A job's ``uses`` entry of a file it reads (staged in by Pegasus)."""
    return {"lfn": lfn, "type": "input"}


def output_use(lfn: str) -> dict[str, Any]:
    """A job's ``uses`` entry of a file it makes: staged out (by the Replica mapper), not registered."""
    return {"lfn": lfn, "type": "output", "stageOut": True, "registerReplica": False}


class _InputLocations:
    """``{lfn: path}`` of overall inputs stored off their template path, from the files
    ``bps prepare`` wrote; each file is read once (consecutive jobs share one)."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}
        self._files: set[str] = set()

    def read(self, path: str) -> None:
        if path not in self._files:
            self._files.add(path)
            self.paths.update(_read_input_locations(path))


def _pegasus_profile(job: Job) -> dict[str, int]:
    """The ``pegasus`` profiles of a job's resources."""
    res = job.resources
    pegasus = {"memory": res.memory_mb, "cores": res.cpus, "diskspace": res.disk_mb}
    if res.walltime_s:
        pegasus["runtime"] = res.walltime_s
    return pegasus


def memory_profiles(job: Job, site_cap: int, held_timeout_s: int | None = None) -> dict[str, str]:
    """The ``condor`` profiles of memory escalation for a compute job.

    The same trio, from the same policy, as the HTCondor translator's submit
    descriptions (`bps.wms.htcondor.memory`): ``request_memory`` grows after a
    memory hold, ``periodic_release`` releases a memory-held job with room left
    under the cap, ``periodic_remove`` removes it at the cap (and, after
    ``held_timeout_s``, a job held for any other reason). The cap is
    ``min(memory_max_mb, site_cap)``, never below the job's own request. The base
    is the job's request as a literal: ``pegasus-plan`` writes each profile as a
    ``key = value`` line of the job's own submit file, with no per-node macro.
    """
    retry = job.retry
    return dict(
        _memory_profiles(
            job.resources.memory_mb,
            retry.memory_multiplier,
            retry.memory_max_mb,
            retry.retries,
            site_cap,
            held_timeout_s or None,
        )
    )


@functools.lru_cache(maxsize=4096)
def _memory_profiles(
    base_mb: int,
    multiplier: float,
    memory_max_mb: int,
    retries: int,
    site_cap: int,
    held_timeout_s: int | None,
) -> tuple[tuple[str, str], ...]:
    """Cached: 10^5 jobs share a handful of policies (one per label, as a rule)."""
    policy = memory.MemoryPolicy(
        base_mb=base_mb,
        multiplier=multiplier,
        # Escalating beyond the largest slot would leave the job idle forever.
        max_mb=max(min(memory_max_mb, site_cap), base_mb),
        max_starts=max(retries, 1) + 1,
        held_timeout_s=held_timeout_s,
    )
    # add_condor_profile(request_memory=...) accepts only "<int> MB"-like values, so
    # the translator adds these through add_profiles(Namespace.CONDOR, ...).
    return tuple(memory.submit_commands(policy, base=memory.literal_base(policy)).items())


def _read_input_locations(path: str) -> dict[str, str]:
    """``{lfn: path}`` from a file written by ``bps prepare`` (see ``bps.prepare``)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise WmsError(
            f"cannot read the input locations {path}: {err}; prepare the submit directory again"
        ) from None
    return {str(lfn): str(location) for lfn, location in data.items()}


@functools.cache
def _transformation_name(executable: str) -> str:
    return catalogs.transformation_name(executable)


@functools.cache
def _manifest_template() -> tuple[str, str]:
    """The manifest file name around the job name, as `bps.staging.manifest_path` makes it."""
    from ...staging import manifest_path

    prefix, _, suffix = manifest_path(".", "\0").name.partition("\0")
    return prefix, suffix


def _manifest_output(arguments: list[str]) -> tuple[int, str, str] | None:
    """``(index of the --manifest-dir value, the directory, the manifest's lfn)``, if any."""
    try:
        index = arguments.index("--manifest-dir") + 1
        job_name = arguments[arguments.index("--job") + 1]
    except (ValueError, IndexError):
        return None
    if index >= len(arguments):
        return None
    prefix, suffix = _manifest_template()
    return index, arguments[index], prefix + job_name + suffix


def _graph_value(job: Job) -> str | None:
    """The graph file a job's arguments name (``--graph PATH`` or ``--graph=PATH``), if any."""
    args = job.arguments
    for i, arg in enumerate(args):
        if arg == "--graph" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--graph="):
            return arg[len("--graph=") :]
    return None


def _rewrite_arguments(arguments: list[str], graph_args: dict[str, str]) -> list[str]:
    """Replace the graph path (``PATH`` or ``--graph=PATH``) by its staged logical name."""
    result = []
    for arg in arguments:
        if arg in graph_args:
            arg = graph_args[arg]
        elif arg.startswith("--graph="):
            value = arg[len("--graph=") :]
            arg = "--graph=" + graph_args.get(value, value)
        result.append(arg)
    return result


# -- writing ---------------------------------------------------------------------------


def write_plan(plan: PegasusPlan, pegasus_dir: Path, run_name: str = "run") -> Path:
    """Write the two workflows, the three catalogs, the properties, the job map and ``plan.sh``.

    Every file is written to a temporary name and renamed, so an interrupted
    prepare never leaves a half-written workflow that ``pegasus-plan`` would read.
    ``plan.sh`` plans into ``pegasus/submit/<run_name>``. Returns the workflow file.
    """
    with gc_paused(), _quiet_api():
        return _write_plan(plan, pegasus_dir, run_name)


def _write_plan(plan: PegasusPlan, pegasus_dir: Path, run_name: str) -> Path:
    pegasus_dir.mkdir(parents=True, exist_ok=True)
    (pegasus_dir / "scratch").mkdir(exist_ok=True)
    (pegasus_dir / "outputs").mkdir(exist_ok=True)
    plan.replica_catalog.write(pegasus_dir / catalogs.REPLICAS_FILE)
    _write_api(plan.transformation_catalog, pegasus_dir / catalogs.TRANSFORMATIONS_FILE)
    _write_api(plan.site_catalog, pegasus_dir / catalogs.SITES_FILE)
    write_submit_text(pegasus_dir / catalogs.PROPERTIES_FILE, _properties_text(plan.properties))
    # Both written an entry at a time: as one string each they would be ~100 bytes per job.
    atomic_write(pegasus_dir / JOB_MAP_FILE, _job_map_chunks(plan.job_map))
    atomic_write(pegasus_dir / OUTPUT_MAP_FILE, _output_map_lines(plan.output_locations))
    script = pegasus_dir / PLAN_SCRIPT
    write_submit_text(script, _plan_script(plan_command(plan, pegasus_dir, submit=True, run_name=run_name)))
    script.chmod(0o755)
    plan.workflow.write(pegasus_dir / COMPUTE_FILE)
    path = pegasus_dir / WORKFLOW_FILE
    _write_api(plan.root, path)
    return path


def output_map_text(locations: Mapping[str, str]) -> str:
    """Lines ``LFN PFN site="local"`` (Pegasus's File replica format) for the Replica output mapper."""
    return "".join(_output_map_lines(locations))


def _output_map_lines(locations: Mapping[str, str]) -> Iterator[str]:
    """`output_map_text` one line at a time (each with its newline; one newline when empty).

    A streamed workflow's locations (`bps.wms.pegasus.streamed`) write their own lines, in chunks.
    """
    chunks = getattr(locations, "map_chunks", None)
    if chunks is not None:
        yield from chunks()
        return
    if not locations:
        yield "\n"
    for lfn in sorted(locations):  # names are unique: the order of sorted items, without every path at once
        yield output_map_line(lfn, locations[lfn])


def output_map_line(lfn: str, path: str) -> str:
    """The ``outputs.map`` line staging ``lfn`` out to ``path`` (the URL quoted when it must be)."""
    pfn = catalogs.file_url(path)
    if _NEEDS_QUOTES.search(pfn):
        pfn = '"' + pfn.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f'{lfn} {pfn} site="local"\n'


def _job_map_chunks(job_map: Mapping[str, Mapping[str, str]]) -> Iterator[str]:
    """``json.dumps(job_map, separators=(",", ":"))``, one entry at a time.

    A streamed workflow's job map (`bps.wms.pegasus.streamed`) writes its own, in chunks.
    """
    chunks = getattr(job_map, "json_chunks", None)
    if chunks is not None:
        yield from chunks()
        return
    yield "{"
    for i, (pid, entry) in enumerate(job_map.items()):
        yield ("," if i else "") + json.dumps(pid) + ":" + json.dumps(entry, separators=(",", ":"))
    yield "}"


def plan_command(
    plan: PegasusPlan, pegasus_dir: Path, submit: bool = True, run_name: str = "run"
) -> list[str]:
    """The ``pegasus-plan`` command line for a written plan (run from ``pegasus_dir``).

    It plans ``workflow.yml``, whose two jobs (the compute sub-workflow and the
    final job) run on the submit host; the compute workflow is planned by Pegasus
    when its DAG node starts, with `compute_planner_arguments`. Pegasus refuses to
    plan into an existing directory, so each planning of one submit directory gets
    its own ``run_name`` under ``pegasus/submit``.
    """
    cmd = [
        "pegasus-plan",
        "--conf",
        catalogs.PROPERTIES_FILE,
        "--dir",
        str(pegasus_dir / "submit"),
        "--relative-dir",
        run_name,
        "--sites",
        "local",
        "--output-sites",
        "local",
    ]
    if submit:
        cmd.append("--submit")
    cmd.append(WORKFLOW_FILE)
    return cmd


def compute_planner_arguments(
    settings: PegasusSettings, data_configuration: DataConfiguration, pegasus_dir: Path
) -> list[str]:
    """The ``pegasus-plan`` arguments of the compute sub-workflow (its execution and staging sites).

    Pegasus runs the sub-workflow's planner from the run directory, so the
    properties file is given by absolute path (and its catalogs are absolute too).
    """
    args = [
        "--conf",
        str(pegasus_dir / catalogs.PROPERTIES_FILE),
        "--sites",
        settings.execution_site,
        "--output-sites",
        "local",
    ]
    if data_configuration == "nonsharedfs":
        args += ["--staging-site", f"{settings.execution_site}={settings.staging_site}"]
    if settings.cluster_size:
        args += ["--cluster", "horizontal"]
    return args


def _plan_script(cmd: list[str]) -> str:
    import shlex

    return (
        "#!/bin/sh\n"
        "# Plan (and submit) this Pegasus workflow; written by `bps submit --wms pegasus`.\n"
        'cd "$(dirname "$0")" || exit 1\n'
        f"exec {shlex.join(cmd)}\n"
    )


def to_document(obj: Any) -> dict[str, Any]:
    """The document (plain dicts, with its header) of a plan's workflow or catalog."""
    if isinstance(obj, (WorkflowDocument, ReplicaDocument)):
        return obj.document()
    return api_document(obj)


def _write_api(obj: Any, path: Path) -> None:
    """Write a ``Pegasus.api`` workflow or catalog as compact JSON (valid YAML), atomically."""
    atomic_write(path, [compact(api_document(obj))])


def _properties_text(props: Properties) -> str:
    import io

    buffer = io.StringIO()
    props.write(buffer)
    return buffer.getvalue()
