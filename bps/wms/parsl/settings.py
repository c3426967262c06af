"""The ``site.parsl`` keys of a site file, checked before anything runs.

Parsl's own objects (providers, executors) are built from these only in the workflow
process (`bps.wms.parsl.config`); here the keys are checked as plain values, so that
``bps prepare`` refuses a typo in a second and without importing ``parsl``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, fields
from typing import Any

from ...workflow import SiteConfig

PROVIDERS = ("local", "slurm")

#: Options a site may pass to its provider. The sizes of a block (cores, memory, walltime,
#: nodes, blocks) are not among them: they come from the jobs' resources and the keys below.
PROVIDER_OPTIONS: dict[str, tuple[str, ...]] = {
    "local": ("worker_init", "cmd_timeout"),
    "slurm": (
        "partition",
        "account",
        "qos",
        "constraint",
        "clusters",
        "exclusive",
        "scheduler_options",
        "worker_init",
        "cmd_timeout",
        "gres",
        "gpus_per_node",
    ),
}

#: Options a site may pass to each HighThroughputExecutor (the per-class sizes are set by bps).
EXECUTOR_OPTIONS = (
    "heartbeat_period",
    "heartbeat_threshold",
    "poll_period",
    "worker_logdir_root",
    "cpu_affinity",
    "prefetch_capacity",
    "drain_period",
    "address_probe_timeout",
    "worker_port_range",
    "interchange_port_range",
)

_WALLTIME = re.compile(r"^\d+:\d{2}:\d{2}$")


@dataclass(frozen=True)
class ParslSettings:
    """What ``site.parsl`` may say (docs/parsl.md has the table).

    Attributes
    ----------
    provider
        ``local`` (workers on the machine running the workflow process) or ``slurm``.
    address
        The address workers use to reach the workflow process; ``None``: Parsl probes the
        host's addresses (``127.0.0.1`` on one machine skips the probe).
    workers_per_block
        Jobs of one resource class that one block (one batch job, one node) runs at once,
        further limited by the site's largest slot (``max_cpus``, ``max_memory_mb``).
    init_blocks, min_blocks, max_blocks
        Blocks per resource class: at start, kept while idle, at most.
    walltime
        A block's walltime (``HH:MM:SS``), raised to fit the longest job of its class.
    detach
        ``bps submit`` starts the workflow process in the background and returns (default);
        ``false``: it runs in the foreground until the run ends (e.g. inside a batch job).
    max_idletime_s
        Seconds an idle block is kept before it is released.
    kill_after_s
        Grace a job over its walltime gets between SIGTERM and SIGKILL.
    provider_options, executor_options
        Passed to each provider / HighThroughputExecutor (names in `PROVIDER_OPTIONS`,
        `EXECUTOR_OPTIONS`).
    """

    provider: str = "local"
    address: str | None = None
    workers_per_block: int = 2
    init_blocks: int = 1
    min_blocks: int = 0
    max_blocks: int = 1
    walltime: str = "01:00:00"
    detach: bool = True
    max_idletime_s: float = 120.0
    kill_after_s: int = 30
    provider_options: dict[str, Any] = field(default_factory=dict)
    executor_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, site: SiteConfig) -> ParslSettings:
        """The settings of ``site``; `ValueError` naming the key and the fix when one is wrong."""
        raw = dict(site.parsl or {})
        known = [f.name for f in fields(cls)]
        where = f"site {site.name!r}: site.parsl"
        for key in raw:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {known}"
                raise ValueError(f"{where}.{key} is not a Parsl setting: {hint}")
        settings = cls(**raw)
        settings._check(where)
        return settings

    def _check(self, where: str) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"{where}.provider = {self.provider!r}: choose one of {list(PROVIDERS)}")
        for name in ("workers_per_block", "max_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{where}.{name} = {value!r}: must be an integer of at least 1")
        for name in ("init_blocks", "min_blocks", "kill_after_s"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{where}.{name} = {value!r}: must be an integer of at least 0")
        if self.min_blocks > self.max_blocks or self.init_blocks > self.max_blocks:
            raise ValueError(
                f"{where}: init_blocks ({self.init_blocks}) and min_blocks ({self.min_blocks}) "
                f"must not exceed max_blocks ({self.max_blocks})"
            )
        if not isinstance(self.walltime, str) or not _WALLTIME.match(self.walltime):
            raise ValueError(f"{where}.walltime = {self.walltime!r}: write it as HH:MM:SS, e.g. '04:00:00'")
        if not isinstance(self.detach, bool):
            raise ValueError(f"{where}.detach = {self.detach!r}: must be true or false")
        for name, allowed in (
            ("provider_options", PROVIDER_OPTIONS[self.provider]),
            ("executor_options", EXECUTOR_OPTIONS),
        ):
            options = getattr(self, name)
            if not isinstance(options, dict):
                raise ValueError(f"{where}.{name} must be a mapping, got {options!r}")
            for key in options:
                if key not in allowed:
                    raise ValueError(
                        f"{where}.{name}.{key} is not passed on to the {self.provider} "
                        f"{'provider' if name == 'provider_options' else 'executor'}: bps sets the sizes "
                        f"of blocks and workers itself; allowed: {list(allowed)}"
                    )

    @property
    def walltime_s(self) -> int:
        """`walltime` in seconds."""
        hours, minutes, seconds = (int(p) for p in self.walltime.split(":"))
        return hours * 3600 + minutes * 60 + seconds


def format_walltime(seconds: int) -> str:
    """``HH:MM:SS`` of ``seconds`` (hours may exceed 24, as Slurm accepts)."""
    seconds = max(int(seconds), 1)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
