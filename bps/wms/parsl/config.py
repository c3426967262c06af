"""The ``parsl.Config`` of a run: one HighThroughputExecutor per resource class.

Imported only by the workflow process (`bps.wms.parsl.driver`) and by tests: it imports
``parsl``, which nothing else of bps does.

Each executor's workers are the size of its class (``cores_per_worker``,
``mem_per_worker``) and one block runs ``workers`` of them. With the Slurm provider a
block is one batch job asking for exactly that (``--cpus-per-task`` = cores x workers,
``--mem`` = memory x workers, a walltime that fits the longest job of the class); with
the local provider the workers run on the workflow process's machine, and the worker
pool also stops at what the machine's free cores and memory hold.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.executors.high_throughput.executor import DEFAULT_LAUNCH_CMD
from parsl.providers import LocalProvider, SlurmProvider
from parsl.providers.base import ExecutionProvider

from ...workflow import SiteConfig
from ..htcondor.translator import job_python
from .commands import ResourceClass
from .settings import ParslSettings, format_walltime

#: Seconds a block outlives the longest job of its class (start-up of the worker pool).
BLOCK_MARGIN_S = 300


def provider_for(rc: ResourceClass, settings: ParslSettings) -> ExecutionProvider:
    """The provider of one resource class's blocks."""
    blocks: dict[str, Any] = {
        "nodes_per_block": 1,
        "init_blocks": settings.init_blocks,
        "min_blocks": settings.min_blocks,
        "max_blocks": rc.max_blocks or settings.max_blocks,
    }
    if rc.max_blocks is not None:
        blocks["init_blocks"] = min(blocks["init_blocks"], 1)
        blocks["min_blocks"] = min(blocks["min_blocks"], 1)
    options = dict(settings.provider_options)
    if settings.provider == "local":
        return LocalProvider(**blocks, **options)
    walltime = max(settings.walltime_s, (rc.walltime_s or 0) + BLOCK_MARGIN_S)
    options.setdefault("exclusive", False)  # a block asks for what its workers need, not a whole node
    return SlurmProvider(
        **blocks,
        walltime=format_walltime(walltime),
        cores_per_node=rc.cpus * rc.workers,
        mem_per_node=math.ceil(rc.memory_mb * rc.workers / 1024),
        **options,
    )


def executor_for(rc: ResourceClass, site: SiteConfig, settings: ParslSettings) -> HighThroughputExecutor:
    """The HighThroughputExecutor of one resource class.

    Its worker pool is started with the jobs' interpreter's ``process_worker_pool.py`` (the
    software area the jobs use, found without ``PATH``), and the interchange with the
    workflow process's own, through `bps.wms.parsl.interchange_guard` (it ends with the process).
    """
    pool = Path(job_python(site)).parent / "process_worker_pool.py"
    interchange = Path(sys.executable).parent / "interchange.py"
    options: dict[str, Any] = {
        "address": settings.address,
        "cores_per_worker": float(rc.cpus),
        "mem_per_worker": rc.memory_mb / 1024,
        "max_workers_per_node": rc.workers,
        "launch_cmd": DEFAULT_LAUNCH_CMD.replace("process_worker_pool.py", str(pool), 1),
        **settings.executor_options,
    }
    if interchange.exists():
        # the interchange ends with the workflow process, even one killed outright
        options["interchange_launch_cmd"] = [
            sys.executable,
            "-m",
            "bps.wms.parsl.interchange_guard",
            str(interchange),
        ]
    return HighThroughputExecutor(label=rc.label, provider=provider_for(rc, settings), **options)


def parsl_config(
    classes: dict[str, ResourceClass],
    site: SiteConfig,
    settings: ParslSettings,
    run_dir: Path,
    retries: int,
    retry_handler: Callable[[Exception, Any], float],
) -> Config:
    """The whole configuration: the executors, Parsl's retry budget and handler, its run directory.

    Parsl retries a task while the costs its handler returned add up to at most
    ``retries``; the handler (the workflow process's) charges 1 for a failure worth
    retrying and more than the budget for one that is not, so each job gets its own
    number of retries and the no-retry exit codes end it at once.
    """
    return Config(
        executors=[executor_for(rc, site, settings) for rc in classes.values()],
        retries=retries,
        retry_handler=retry_handler,
        run_dir=str(run_dir),
        strategy="simple",
        max_idletime=settings.max_idletime_s,
        usage_tracking=0,
    )
