"""The Pegasus section of a site config, validated.

A site config (``site_configs/pegasus_*.yaml``) describes a cluster for every
workflow system; its ``pegasus:`` mapping holds what only Pegasus needs: which site
of the site catalog runs the jobs, how data reaches them (Pegasus's *data
configuration*), and where scratch space lives. Validating it here, with pydantic
and ``extra="forbid"``, turns a typo in a key into an error that names the key and
the site config, instead of a planner failure an hour later on the cluster.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ...workflow import SiteConfig
from ..base import WmsError

DataConfiguration = Literal["sharedfs", "nonsharedfs", "condorio"]
#: Pegasus removes a job held longer than this by default (its planner's default ``periodic_remove``).
HELD_TIMEOUT_S = 1800


class PegasusSettings(BaseModel):
    """Pegasus-specific facts about a site.

    Attributes
    ----------
    execution_site : `str`
        The site-catalog name of the site that runs the compute jobs; ``local``
        runs them on the submit host (useful for a laptop with HTCondor). When
        unset: ``local`` for a site whose ``wms`` is ``local`` (so
        ``bps submit --wms pegasus`` works on a laptop without a Pegasus section),
        else ``condorpool``.
    data_configuration : `str`, optional
        ``sharedfs`` (workers see a shared scratch directory), ``nonsharedfs``
        (files go through a staging site) or ``condorio`` (HTCondor file
        transfer). Defaults from the site's ``staging``: ``shared`` gives
        ``sharedfs``, ``transfer`` gives ``condorio``.
    shared_scratch : `str`, optional
        Absolute path of the scratch directory seen by the workers
        (required for ``sharedfs`` on a non-local execution site).
    staging_site, staging_url, staging_path
        The staging site for ``nonsharedfs``: its name, the URL prefix through
        which Pegasus transfers reach it (``scp://host``, ``gsiftp://host``,
        ``file://`` for a mounted filesystem) and the directory on it.
    staging_user : `str`, optional
        The user Pegasus logs in as on the staging site, for ``scp://``,
        ``sshftp://`` and ``gsiscp://`` staging URLs (or put it in the URL,
        ``scp://user@host``); Pegasus refuses such a URL without one.
    ssh_private_key : `str`, optional
        Absolute path, on the submit host, of the SSH private key for the staging
        site (``scp://``, ``sshftp://``): Pegasus ships it with the transfer jobs.
        It must exist and be readable by its owner only (mode 0600), as ``ssh``
        requires.
    pegasus_home : `str`, optional
        The Pegasus installation on the execution site's workers (``PEGASUS_HOME``
        there). Required for ``sharedfs`` on a pool, where Pegasus runs its transfer
        tools on the workers from this installation; elsewhere, when unset, Pegasus
        ships its worker package with the jobs.
    input_site : `str`
        The site where the datastore (overall inputs) and the graph file live.
    arch, os_type : `str`
        Architecture and OS of the execution site, as in the site catalog schema.
    cluster_size : `int`, optional
        When set, Pegasus horizontal clustering groups this many ``run_quantum``
        jobs of one level into one Condor job (``pegasus-plan --cluster horizontal``).
    properties : `dict`
        Extra Pegasus properties written verbatim to ``pegasus.properties``.
    held_timeout_s : `int`, optional
        Remove a job held for another reason than memory after this many seconds,
        so the run ends (`bps.wms.htcondor.memory`). Default 1800: what Pegasus's own
        default ``periodic_remove`` does, which the memory-escalation profiles
        replace. ``null`` or 0: such a job stays held until someone acts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    execution_site: str = Field(default="condorpool", pattern=r"^[A-Za-z0-9_.-]+$")
    data_configuration: DataConfiguration | None = None
    shared_scratch: str | None = None
    staging_site: str = Field(default="staging", pattern=r"^[A-Za-z0-9_.-]+$")
    staging_url: str | None = None
    staging_path: str | None = None
    staging_user: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")
    ssh_private_key: str | None = None
    pegasus_home: str | None = None
    input_site: str = Field(default="local", pattern=r"^[A-Za-z0-9_.-]+$")
    arch: Literal["x86", "x86_64", "ppc", "ppc_64", "ppc64le", "ia64", "amd64", "aarch64"] = "x86_64"
    os_type: Literal["linux", "macosx", "sunos", "aix", "windows"] = "linux"
    cluster_size: int | None = Field(default=None, ge=1)
    properties: dict[str, str | int | float | bool] = Field(default_factory=dict)
    held_timeout_s: int | None = Field(default=HELD_TIMEOUT_S, ge=0)

    @model_validator(mode="after")
    def _check_paths(self) -> PegasusSettings:
        for name in ("shared_scratch", "staging_path", "ssh_private_key", "pegasus_home"):
            value = getattr(self, name)
            if value is not None and not value.startswith("/"):
                raise ValueError(f"{name} must be an absolute path, got {value!r}")
        return self


def load_settings(site: SiteConfig) -> tuple[PegasusSettings, DataConfiguration]:
    """Validate ``site.pegasus`` and decide the data configuration.

    Returns
    -------
    settings : `PegasusSettings`
        The validated section.
    data_configuration : `str`
        The effective data configuration.

    Raises
    ------
    WmsError
        If the section has an unknown key, a bad value, or lacks what the chosen
        data configuration needs; the message names the site config and the fix.
    """
    where = f"site config {site.name!r}, section 'pegasus'"
    try:
        data = dict(site.pegasus or {})
        data.setdefault("execution_site", "local" if site.wms == "local" else "condorpool")
        settings = PegasusSettings.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(section)'}: {e['msg']}" for e in err.errors()
        )
        raise WmsError(f"{where}: {problems}") from None
    data_configuration: DataConfiguration = settings.data_configuration or (
        "sharedfs" if site.staging == "shared" else "condorio"
    )
    remote = settings.execution_site != "local"
    if data_configuration == "sharedfs" and remote and not settings.shared_scratch:
        raise WmsError(
            f"{where}: data_configuration 'sharedfs' on execution site {settings.execution_site!r} needs "
            "'shared_scratch': an absolute directory on the shared filesystem that every worker can read "
            "and write (or use data_configuration 'condorio' to let HTCondor transfer files)"
        )
    if data_configuration == "nonsharedfs" and not (settings.staging_url and settings.staging_path):
        raise WmsError(
            f"{where}: data_configuration 'nonsharedfs' needs 'staging_url' (e.g. scp://host or file://) "
            "and 'staging_path' (an absolute directory on the staging site) so Pegasus knows where to "
            "stage files between jobs"
        )
    if data_configuration == "sharedfs" and remote and not settings.pegasus_home:
        raise WmsError(
            f"{where}: data_configuration 'sharedfs' on execution site {settings.execution_site!r} needs "
            "'pegasus_home': the Pegasus installation on the workers (Pegasus runs its transfer tools "
            "there from it), e.g. /usr or /opt/pegasus/5.1.2"
        )
    if data_configuration == "nonsharedfs":
        _check_staging_credentials(settings, where)
    return settings, data_configuration


#: HTCondor's default MOUNT_UNDER_SCRATCH: pegasus-plan refuses a credential under these.
_MOUNT_UNDER_SCRATCH = ("/tmp", "/var/tmp")
#: Staging URL schemes Pegasus reaches over SSH: a user name is required, and (except gsiscp) a key.
_SSH_SCHEMES = {"scp": True, "sshftp": True, "gsiscp": False}


def _check_staging_credentials(settings: PegasusSettings, where: str) -> None:
    """An SSH staging URL needs a user and a private key only its owner can read."""
    import os
    import stat

    scheme, _, rest = (settings.staging_url or "").partition("://")
    if scheme not in _SSH_SCHEMES:
        return
    if not settings.staging_user and "@" not in rest.split("/", 1)[0]:
        raise WmsError(
            f"{where}: staging_url {settings.staging_url!r} is reached over SSH and needs a user: set "
            "'staging_user' (or write the URL as scheme://user@host)"
        )
    if not _SSH_SCHEMES[scheme]:
        return
    key = settings.ssh_private_key
    if not key:
        raise WmsError(
            f"{where}: staging_url {settings.staging_url!r} needs 'ssh_private_key': the absolute path of "
            "the SSH private key (mode 0600) that logs in to the staging site"
        )
    scratch = next((d for d in _MOUNT_UNDER_SCRATCH if key.startswith(d + "/")), None)
    if scratch:
        raise WmsError(
            f"{where}: ssh_private_key {key!r} is under {scratch}, which HTCondor mounts privately for "
            "each job (MOUNT_UNDER_SCRATCH), so Pegasus refuses to ship it: keep the key elsewhere, "
            "e.g. ~/.ssh"
        )
    try:
        mode = os.stat(key).st_mode
    except OSError as err:
        raise WmsError(
            f"{where}: ssh_private_key {key!r} cannot be read ({err.strerror}); point it at the SSH "
            "private key for the staging site"
        ) from None
    if not stat.S_ISREG(mode):
        raise WmsError(f"{where}: ssh_private_key {key!r} is not a file; point it at the SSH private key")
    if mode & 0o077:
        raise WmsError(
            f"{where}: ssh_private_key {key!r} is readable by others (mode {stat.S_IMODE(mode):04o}), "
            f"which ssh refuses: run `chmod 600 {key}`"
        )
