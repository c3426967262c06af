"""Where each file of an HTCondor run lives inside its submit directory.

One module owns the names so that the translator, the report and the restart agree,
and so that a submit directory can be read again long after the schedd forgot it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ...workflow import Job, safe_name

#: Staged outputs of file-transfer runs land here (``<submit_dir>/staged/<lfn>``);
#: the final job moves them into the datastore before registering them.
STAGED_DIR = "staged"
#: Symbolic links ``<lfn> -> <datastore>/<path>`` for overall inputs of file-transfer runs:
#: HTCondor cannot rename files on input transfer, so the link gives each its logical name.
INPUT_LINKS_DIR = "inputs"
#: Job logs, one tree per label (and per unit), one merged stdout+stderr file per attempt.
JOBS_DIR = "jobs"
#: Job scratch area used by the test runner when a site names none.
POST_SCRIPT = "bps_post.sh"
DAGMAN_CONFIG = "dagman.config"
WORKFLOW_JSON = "workflow.json"


@dataclass(frozen=True)
class DagLayout:
    """File names of one DAG in ``submit_dir`` (all absolute)."""

    submit_dir: Path
    name: str

    @classmethod
    def of(cls, submit_dir: str | Path, name: str) -> DagLayout:
        return cls(Path(submit_dir).absolute(), safe_name(name))

    @property
    def dag(self) -> Path:
        return self.submit_dir / f"{self.name}.dag"

    @property
    def nodes_log(self) -> Path:
        """The job event log DAGMan writes for all node jobs (its default name)."""
        return self.submit_dir / f"{self.name}.dag.nodes.log"

    @property
    def dagman_out(self) -> Path:
        return self.submit_dir / f"{self.name}.dag.dagman.out"

    @property
    def node_status(self) -> Path:
        return self.submit_dir / f"{self.name}.node_status"

    @property
    def config(self) -> Path:
        return self.submit_dir / DAGMAN_CONFIG

    @property
    def post_script(self) -> Path:
        return self.submit_dir / POST_SCRIPT

    @property
    def workflow_json(self) -> Path:
        return self.submit_dir / WORKFLOW_JSON

    @property
    def staged(self) -> Path:
        return self.submit_dir / STAGED_DIR

    @property
    def input_links(self) -> Path:
        return self.submit_dir / INPUT_LINKS_DIR

    @property
    def jobs_dir(self) -> Path:
        return self.submit_dir / JOBS_DIR

    @property
    def final_submit_file(self) -> Path:
        """The FINAL node's description (named after the node, so no job label can clash with it)."""
        return self.submit_dir / "bps_final.sub"

    def submit_file(self, label: str) -> Path:
        """The one submit description shared by every job of ``label``."""
        return self.submit_dir / f"{safe_name(label)}.sub"

    def log_stem(self, job: Job, node: str) -> str:
        """Per-node log path stem relative to the submit directory; the submit file appends ``.<cluster>.out``."""
        return log_dir(job.label, job.log_subdir, unit_subdir(job)) + "/" + node

    def final_log_dir(self, job: Job) -> Path:
        return self.submit_dir / (job.log_subdir or JOBS_DIR) / "final"

    def rescue_files(self) -> list[Path]:
        """Rescue DAGs, oldest first (DAGMan numbers them ``.rescue001`` upward)."""
        pattern = re.compile(re.escape(self.dag.name) + r"\.rescue(\d{3})$")
        found = [
            (int(m.group(1)), p)
            for p in self.submit_dir.glob(self.dag.name + ".rescue*")
            if (m := pattern.search(p.name))
        ]
        return [p for _, p in sorted(found)]


#: Units that name a log directory level, most specific grouping first.
UNIT_KEYS = ("tract", "visit", "exposure")


def unit_subdir(job: Job) -> str:
    """``tract-9`` when all the job's outputs (else inputs) share one tract, etc.; else ``""``."""
    files = job.outputs or job.inputs
    if not files:
        return ""
    first = files[0].data_id
    for key in UNIT_KEYS:
        value = first.get(key)
        if value is not None and all(f.data_id.get(key) == value for f in files):
            return f"{key}-{value}"
    return ""


@lru_cache(maxsize=65536)
def log_dir(label: str, log_subdir: str, unit: str) -> str:
    """A job's log directory relative to the submit directory.

    The workflow's ``log_subdir`` (e.g. ``logs/calibrate``), else ``jobs/<label>``, then
    one level per unit such as ``tract-9``: a directory tree an operator can walk, never
    one flat directory of 10^5 files.
    """
    base = log_subdir.strip("/") or f"{JOBS_DIR}/{safe_name(label)}"
    parts = [safe_name(p) for p in Path(base).parts if p not in ("", ".", "..")]
    if unit:
        parts.append(safe_name(unit))
    return "/".join(parts)


def find_dag(submit_dir: str | Path) -> DagLayout:
    """The layout of the single DAG in a prepared submit directory, or a clear error."""
    submit_dir = Path(submit_dir).absolute()
    dags = sorted(submit_dir.glob("*.dag"))
    if not dags:
        raise FileNotFoundError(
            f"{submit_dir} holds no .dag file: it was not prepared for HTCondor "
            "(run `bps submit CONFIG.yaml` with wms: htcondor, or check the path)"
        )
    if len(dags) > 1:
        raise ValueError(f"{submit_dir} holds several DAGs ({[d.name for d in dags]}); expected one")
    return DagLayout(submit_dir, dags[0].name[: -len(".dag")])
