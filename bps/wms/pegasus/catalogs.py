"""The Pegasus catalogs and properties of a workflow: where things are and how to reach them.

Pegasus plans an abstract workflow against three catalogs:

- the *replica catalog* says where overall inputs already exist (here: the
  datastore files and the graph file, on the input site);
- the *transformation catalog* says where the executables are installed
  (``run_quantum`` on the execution site, the finalize command on ``local``);
- the *site catalog* describes the sites: the submit host (``local``), the
  execution site (an HTCondor pool) and, for the non-shared-filesystem data
  configuration, a staging site.

They are built with the ``Pegasus.api`` classes so their structure follows
Pegasus's own, and written as separate files referenced from
``pegasus.properties`` so an operator can read and edit each one before planning.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from Pegasus.api import (
    OS,
    Arch,
    Directory,
    FileServer,
    Namespace,
    Operation,
    Properties,
    Site,
    SiteCatalog,
    Transformation,
    TransformationCatalog,
    TransformationSite,
)

from ...workflow import GenericWorkflow, Job, SiteConfig
from ..base import WmsError
from .document import ReplicaDocument
from .settings import DataConfiguration, PegasusSettings

#: File names inside the Pegasus directory of a submit directory.
SITES_FILE = "sites.yml"
REPLICAS_FILE = "replicas.yml"
TRANSFORMATIONS_FILE = "transformations.yml"
PROPERTIES_FILE = "pegasus.properties"
OUTPUT_MAP_FILE = "outputs.map"


def file_url(path: str | Path) -> str:
    """A ``file://`` URL for a local path (made absolute)."""
    if isinstance(path, str) and path.startswith("/"):
        return "file://" + path  # the common case, without pathlib's cost (10^5 calls)
    return "file://" + str(Path(path).absolute())


def repo_root(repo: str) -> Path:
    """The local directory of a repository given as a path or a ``file://`` URI.

    Raises
    ------
    WmsError
        For a non-file URI: Pegasus needs the datastore files on a filesystem
        the input site can serve.
    """
    if repo.startswith("file://"):
        return Path(repo[len("file://") :])
    if "://" in repo:
        raise WmsError(
            f"repository {repo!r} is not a local directory; the Pegasus translator stages overall "
            "inputs from the datastore on disk: pass the repository root path"
        )
    return Path(repo).absolute()


def build_replica_catalog(
    workflow: GenericWorkflow,
    graph_lfn: str,
    site_name: str,
    input_locations: dict[str, str] | None = None,
    slices: dict[str, str] | None = None,
) -> ReplicaDocument:
    """Replicas of the overall inputs (datastore files), of the graph file and of the
    jobs' graph slices (``slices``: logical name -> path; transfer staging, `bps.slices`).

    Each overall input (``producer is None``) is listed once, at its datastore
    location on ``site_name`` (``input_locations`` gives the path of inputs stored
    off their template path: absolute, or relative to the datastore root); Pegasus
    then stages it into each job that reads it. The entries are produced from the
    workflow when the catalog is written (10^6 overall inputs are never held twice).
    """
    input_locations = input_locations or {}
    root = str(repo_root(workflow.repo))

    def replicas() -> Iterator[tuple[str, str, str]]:
        yield site_name, graph_lfn, file_url(workflow.graph_file)
        seen: set[str] = {graph_lfn}
        for lfn, path in (slices or {}).items():
            seen.add(lfn)
            yield site_name, lfn, file_url(path)
        for job in _all_jobs(workflow):
            for wf_file in job.inputs:
                if wf_file.producer is None and wf_file.lfn not in seen:
                    seen.add(wf_file.lfn)
                    path = input_locations.get(wf_file.lfn, wf_file.path)
                    yield site_name, wf_file.lfn, file_url(os.path.join(root, path))

    return ReplicaDocument(replicas)


def transformation_name(executable: str) -> str:
    """The transformation-catalog name of an executable (its base name)."""
    return Path(executable).name


def resolve_executable(executable: str, site: SiteConfig) -> str:
    """The absolute path of ``executable`` on the worker.

    Absolute paths are kept. Otherwise the executable is looked for next to the
    site's Python (a virtual environment's ``bin``), then on ``PATH``, then next
    to the Python running this translator: on an HTCondor pool a job does not
    inherit the submitter's ``PATH`` (DAGMan hands its node jobs only a short list of
    environment variables), so the catalog must hold
    a full path.
    """
    if os.path.isabs(executable):
        return executable
    candidates = []
    if site.python:
        candidates.append(Path(site.python).parent / executable)
    found = shutil.which(executable)
    if found:
        candidates.append(Path(found))
    candidates.append(Path(sys.executable).parent / executable)
    for candidate in candidates:
        if candidate.exists():
            return str(candidate.absolute())
    return str(candidates[0].absolute())


def build_transformation_catalog(
    workflow: GenericWorkflow, settings: PegasusSettings, executables: Iterable[str] | None = None
) -> TransformationCatalog:
    """One installed transformation per executable; the final job's runs on ``local``.

    The site's environment goes on each transformation as ``env`` profiles so that
    a job does not depend on what the worker's login environment happens to hold.
    ``executables`` are the compute jobs' executables in the order they first appear
    (read from the jobs when not given).
    """
    tc = TransformationCatalog()
    sites_by_executable: dict[str, set[str]] = {}
    if executables is None:
        executables = (job.executable for job in workflow.jobs.values())
    for executable in executables:
        sites_by_executable.setdefault(executable, set()).add(settings.execution_site)
    if workflow.final is not None:
        sites_by_executable.setdefault(workflow.final.executable, set()).add("local")
    names: dict[str, str] = {}
    for executable, sites in sites_by_executable.items():
        name = transformation_name(executable)
        if names.setdefault(name, executable) != executable:
            raise WmsError(
                f"executables {names[name]!r} and {executable!r} share the name {name!r}; "
                "Pegasus names transformations by base name: rename one of them"
            )
        pfn = resolve_executable(executable, workflow.site)
        transformation = Transformation(name)
        for site_name in sorted(sites):
            transformation.add_sites(TransformationSite(site_name, pfn, is_stageable=False))
        if workflow.site.environment:
            transformation.add_env(**dict(sorted(workflow.site.environment.items())))
        if settings.cluster_size and name != transformation_name(_final_executable(workflow)):
            transformation.add_pegasus_profile(clusters_size=settings.cluster_size)
        tc.add_transformations(transformation)
    return tc


def _final_executable(workflow: GenericWorkflow) -> str:
    return workflow.final.executable if workflow.final is not None else ""


def build_site_catalog(
    workflow: GenericWorkflow,
    settings: PegasusSettings,
    data_configuration: DataConfiguration,
    pegasus_dir: Path,
) -> SiteCatalog:
    """The ``local`` site, the execution site and (for ``nonsharedfs``) the staging site.

    ``local`` keeps its scratch and the staged-out outputs inside the submit
    directory, so one directory holds everything a run wrote.
    """
    site = workflow.site
    sc = SiteCatalog()
    arch = Arch(settings.arch)
    os_type = OS(settings.os_type)

    local = Site("local", arch=arch, os_type=os_type)
    local.add_directories(
        _directory(Directory.SHARED_SCRATCH, pegasus_dir / "scratch", file_url(pegasus_dir / "scratch")),
        _directory(Directory.LOCAL_STORAGE, pegasus_dir / "outputs", file_url(pegasus_dir / "outputs")),
    )
    if settings.execution_site == "local":
        _add_job_environment(local, site)
    sc.add_sites(local)

    if settings.execution_site != "local":
        pool = Site(settings.execution_site, arch=arch, os_type=os_type)
        pool.add_pegasus_profile(style="condor", data_configuration=data_configuration)
        pool.add_condor_profile(universe="vanilla")
        if site.accounting_group:
            pool.add_profiles(Namespace.CONDOR, key="accounting_group", value=site.accounting_group)
        if site.requirements:
            pool.add_condor_profile(requirements=site.requirements)
        if site.project:
            pool.add_pegasus_profile(project=site.project)
        if data_configuration == "sharedfs":
            scratch = settings.shared_scratch or str(pegasus_dir / "scratch")
            pool.add_directories(
                _directory(Directory.SHARED_SCRATCH, scratch, file_url(scratch), shared=True)
            )
            # The shared filesystem is mounted on the submit host too: Pegasus may run the
            # site's transfer jobs there (the planner reads the value as the string "true").
            pool.add_profiles(Namespace.PEGASUS, key="auxillary.local", value="true")
        if settings.pegasus_home:
            # Where pegasus-transfer, pegasus-kickstart... are installed on the workers.
            pool.add_env(PEGASUS_HOME=settings.pegasus_home)
        _add_job_environment(pool, site)
        sc.add_sites(pool)

    if data_configuration == "nonsharedfs":
        staging = Site(settings.staging_site, arch=arch, os_type=os_type)
        path = settings.staging_path or ""
        staging.add_directories(_directory(Directory.SHARED_SCRATCH, path, staging_url(settings) + path))
        if settings.ssh_private_key:
            # Pegasus's SSH credential handler reads this (lower-case) pegasus profile.
            staging.add_profiles(Namespace.PEGASUS, key="ssh_private_key", value=settings.ssh_private_key)
        sc.add_sites(staging)
    return sc


def staging_url(settings: PegasusSettings) -> str:
    """The staging site's URL prefix, with ``staging_user`` put in as ``scheme://user@host``."""
    url = (settings.staging_url or "").rstrip("/")
    scheme, sep, rest = url.partition("://")
    if settings.staging_user and sep and "@" not in rest.split("/", 1)[0]:
        return f"{scheme}://{settings.staging_user}@{rest}"
    return url


def _directory(kind: Any, path: str | Path, url: str, shared: bool = False) -> Directory:
    directory = Directory(kind, str(path), shared_file_system=shared)
    directory.add_file_servers(FileServer(url, Operation.ALL))
    return directory


def _add_job_environment(target: Site, site: SiteConfig) -> None:
    if site.environment:
        target.add_env(**dict(sorted(site.environment.items())))


def build_properties(
    workflow: GenericWorkflow,
    settings: PegasusSettings,
    data_configuration: DataConfiguration,
    pegasus_dir: Path,
) -> Properties:
    """``pegasus.properties``: the catalogs' files, the data configuration and the throttles.

    File names are absolute: Pegasus plans the compute sub-workflow from its run
    directory, where a relative name would not resolve.
    """
    props = Properties()
    props["pegasus.catalog.site.file"] = str(pegasus_dir / SITES_FILE)
    props["pegasus.catalog.replica"] = "YAML"
    props["pegasus.catalog.replica.file"] = str(pegasus_dir / REPLICAS_FILE)
    props["pegasus.catalog.transformation"] = "YAML"
    props["pegasus.catalog.transformation.file"] = str(pegasus_dir / TRANSFORMATIONS_FILE)
    props["pegasus.data.configuration"] = data_configuration
    # Stage every output straight to its final place (see translator.OUTPUT_MAP_FILE).
    props["pegasus.dir.storage.mapper"] = "Replica"
    # Documented Replica-mapper keys that the API's list of known keys lacks: keep its warning quiet.
    api_log = logging.getLogger("Pegasus.api.properties")
    level = api_log.level
    api_log.setLevel(logging.ERROR)
    try:
        props["pegasus.dir.storage.mapper.replica"] = "File"
        props["pegasus.dir.storage.mapper.replica.file"] = str(pegasus_dir / OUTPUT_MAP_FILE)
    finally:
        api_log.setLevel(level)
    # Symlink rather than copy inputs that are already on a filesystem the job sees.
    props["pegasus.transfer.links"] = "true" if data_configuration == "sharedfs" else "false"
    for category, limit in sorted(workflow.throttles.items()):
        props[f"dagman.{category}.maxjobs"] = str(limit)
    for key, value in sorted(settings.properties.items()):
        props[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return props


def _all_jobs(workflow: GenericWorkflow) -> Iterable[Job]:
    yield from workflow.jobs.values()
    if workflow.final is not None:
        yield workflow.final
