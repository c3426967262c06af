"""Run an emitted DAG with DAGMan's semantics, without HTCondor daemons (test support).

No schedd exists on test machines, so this runner executes what the translator wrote,
reading only the files: the ``.dag`` (JOB, VARS, PARENT/CHILD, RETRY/UNLESS-EXIT,
SCRIPT PRE/POST, PRIORITY, CATEGORY/MAXJOBS, FINAL, DONE, the latest rescue DAG)
and the submit descriptions, expanded per node by ``htcondor2.Submit`` exactly as
DAGMan's ``VARS`` would. Each attempt is a new cluster; each job runs with only the
environment its submit description names plus ``$_CONDOR_SCRATCH_DIR`` (field note
15); with ``should_transfer_files = YES`` it runs in a fresh scratch directory holding
only its transferred inputs, and on success its outputs are copied back into
``initialdir``. A job may claim a peak memory by writing ``.bps_test_memory_mb`` into its
scratch directory: above ``request_memory`` the job is held (code 34) and the submit
description's ``periodic_release`` / ``periodic_remove`` are evaluated with ``classad2``,
so memory escalation is exercised by the real ClassAd expressions.

It writes what DAGMan and the schedd would: the job event log (``<dag>.nodes.log``,
classic format), ``<dag>.dagman.out``, the node status file and, after a failure, a
rescue DAG. Jobs run one at a time in priority order (deterministic tests).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import classad2
import htcondor2

from bps.wms.htcondor.quoting import split_arguments, unquote_vars_value

from .htcondor_events import EventLogWriter

NOT_READY, READY, PRERUN, SUBMITTED, POSTRUN, DONE, ERROR, FUTILE = range(8)
STATUS_NAMES = [
    "STATUS_NOT_READY",
    "STATUS_READY",
    "STATUS_PRERUN",
    "STATUS_SUBMITTED",
    "STATUS_POSTRUN",
    "STATUS_DONE",
    "STATUS_ERROR",
    "STATUS_FUTILE",
]
MEMORY_FILE = ".bps_test_memory_mb"
REMOVED_RETURN = -1004


@dataclass
class Node:
    name: str
    submit: str
    vars: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    unless_exit: int | None = None
    pre: list[str] | None = None
    post: list[str] | None = None
    priority: int = 0
    category: str | None = None
    done: bool = False
    parents: set[str] = field(default_factory=set)
    children: set[str] = field(default_factory=set)
    # results
    status: int = NOT_READY
    retry: int = 0
    clusters: list[int] = field(default_factory=list)
    result: int | None = None
    held_reason: str | None = None


@dataclass
class Dag:
    path: Path
    nodes: dict[str, Node]
    final: Node | None = None
    config: str | None = None
    node_status_file: str | None = None
    maxjobs: dict[str, int] = field(default_factory=dict)


def _split(line: str) -> list[str]:
    """Tokens of a DAG line, keeping ``key="quoted value"`` pairs of VARS together."""
    tokens, cur, quote, i = [], [], False, 0
    while i < len(line):
        c = line[i]
        if c == "\\" and quote and i + 1 < len(line):
            cur.append(line[i : i + 2])
            i += 2
            continue
        if c == '"':
            quote = not quote
        if c.isspace() and not quote:
            if cur:
                tokens.append("".join(cur))
                cur = []
        else:
            cur.append(c)
        i += 1
    if quote:
        raise ValueError(f"unbalanced quotes in DAG line: {line!r}")
    if cur:
        tokens.append("".join(cur))
    return tokens


def parse_dag(path: Path) -> Dag:
    """Parse a DAG file; unknown commands raise (the translator must write only what DAGMan knows)."""
    path = Path(path)
    dag = Dag(path=path, nodes={})
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        t = _split(line)
        cmd = t[0].upper()
        try:
            if cmd == "JOB":
                node = Node(t[1], t[2], done="DONE" in t[3:])
                if t[1] in dag.nodes:
                    raise ValueError(f"duplicate node {t[1]}")
                dag.nodes[t[1]] = node
            elif cmd == "FINAL":
                dag.final = Node(t[1], t[2])
            elif cmd == "VARS":
                node = _node(dag, t[1])
                for pair in t[2:]:
                    key, _, value = pair.partition("=")
                    node.vars[key] = unquote_vars_value(value)
            elif cmd == "PARENT":
                k = t.index("CHILD")
                for p in t[1:k]:
                    for c in t[k + 1 :]:
                        dag.nodes[p].children.add(c)
                        dag.nodes[c].parents.add(p)
            elif cmd == "RETRY":
                node = _node(dag, t[1])
                node.retries = int(t[2])
                if len(t) > 3:
                    if t[3].upper() != "UNLESS-EXIT":
                        raise ValueError(f"unknown RETRY option {t[3]}")
                    node.unless_exit = int(t[4])
            elif cmd == "SCRIPT":
                rest = t[1:]
                if rest[0].upper() == "DEFER":
                    rest = rest[3:]
                which, name, *argv = rest
                setattr(_node(dag, name), which.lower(), argv)
            elif cmd == "PRIORITY":
                _node(dag, t[1]).priority = int(t[2])
            elif cmd == "CATEGORY":
                _node(dag, t[1]).category = t[2]
            elif cmd == "MAXJOBS":
                dag.maxjobs[t[1]] = int(t[2])
            elif cmd == "CONFIG":
                dag.config = t[1]
            elif cmd == "NODE_STATUS_FILE":
                dag.node_status_file = t[1]
            elif cmd == "DONE":
                _node(dag, t[1]).done = True
            else:
                raise ValueError(f"unknown DAG command {t[0]}")
        except (IndexError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}:{lineno}: cannot parse {line!r}: {exc}") from exc
    return dag


def _node(dag: Dag, name: str) -> Node:
    if dag.final is not None and dag.final.name == name:
        return dag.final
    return dag.nodes[name]


def latest_rescue(dag_path: Path) -> Path | None:
    found = sorted(dag_path.parent.glob(dag_path.name + ".rescue[0-9][0-9][0-9]"))
    return found[-1] if found else None


@dataclass
class RunResult:
    dag: Dag
    exit_code: int
    order: list[str]

    def status(self, node: str) -> str:
        return STATUS_NAMES[_node(self.dag, node).status]


class DagmanRunner:
    """Run one DAG to completion (see the module docstring)."""

    def __init__(self, dag_path: Path, scratch_root: Path | None = None, first_cluster: int | None = None):
        self.dag_path = Path(dag_path).absolute()
        self.dir = self.dag_path.parent
        self.scratch_root = Path(scratch_root or self.dir / "_scratch")
        self.events = EventLogWriter(self.dir / (self.dag_path.name + ".nodes.log"))
        self.out = self.dir / (self.dag_path.name + ".dagman.out")
        self._submit_text: dict[str, str] = {}
        self._next_cluster = first_cluster or self._cluster_start()

    def _cluster_start(self) -> int:
        log = self.events.path
        return 1 + (log.read_text().count("Job submitted") if log.exists() else 0)

    def log(self, text: str) -> None:
        with self.out.open("a") as f:
            f.write(f"{time.strftime('%m/%d/%y %H:%M:%S')} {text}\n")

    # -- main loop ----------------------------------------------------------------------
    def run(self) -> RunResult:
        dag = parse_dag(self.dag_path)
        rescue = latest_rescue(self.dag_path)
        self.log("******************************************************")
        self.log(
            f"** condor_scheduniv_exec.0.0 (CONDOR_DAGMAN) STARTING UP: DAGMan starting {self.dag_path.name}"
        )
        if rescue is not None:
            self.log(f"Running rescue DAG {rescue.name}")
            for line in rescue.read_text().splitlines():
                t = line.split()
                if t and t[0] == "DONE":
                    dag.nodes[t[1]].done = True
        order: list[str] = []
        for node in dag.nodes.values():
            if node.done:
                node.status = DONE
        pending = {n.name for n in dag.nodes.values() if n.status != DONE}
        while True:
            ready = [
                dag.nodes[n]
                for n in pending
                if all(dag.nodes[p].status == DONE for p in dag.nodes[n].parents)
            ]
            if not ready:
                break
            node = max(ready, key=lambda n: (n.priority, -list(dag.nodes).index(n.name)))
            pending.discard(node.name)
            order.append(node.name)
            self._run_node(node)
            if node.status == ERROR:
                self._mark_futile(dag, node)
                pending -= {n for n in pending if dag.nodes[n].status == FUTILE}
        failed = any(n.status in (ERROR, FUTILE) for n in dag.nodes.values())
        held = any(n.status == SUBMITTED for n in dag.nodes.values())
        if dag.final is not None:
            order.append(dag.final.name)
            self._run_node(dag.final)
        exit_code = 1 if failed or held else 0
        if dag.final is not None and dag.final.status == ERROR:
            exit_code = 1
        if failed:
            self._write_rescue(dag)
        self._write_node_status(dag, exit_code)
        self.log(f"EXITING WITH STATUS {exit_code}")
        return RunResult(dag, exit_code, order)

    def _mark_futile(self, dag: Dag, failed: Node) -> None:
        queue = deque(failed.children)
        while queue:
            child = dag.nodes[queue.popleft()]
            if child.status != FUTILE:
                child.status = FUTILE
                queue.extend(child.children)

    def _run_node(self, node: Node) -> None:
        if node.pre:
            node.status = PRERUN
            if self._script(node, node.pre, None) != 0:
                node.status, node.result = ERROR, None
                self.log(f"PRE Script of node {node.name} failed")
                return
        while True:
            node.status = SUBMITTED
            ret = self._run_job(node)
            if ret is None:  # held forever
                return
            result = ret
            if node.post:
                node.status = POSTRUN
                result = self._script(node, node.post, ret)
            node.result = result
            if result == 0:
                node.status = DONE
                self.log(f"Node {node.name} completed successfully.")
                return
            self.log(f"Node {node.name} failed with status {result}.")
            retry_forbidden = node.unless_exit is not None and result == node.unless_exit
            if node.retry < node.retries and not retry_forbidden:
                node.retry += 1
                self.log(f"Retrying node {node.name} (retry #{node.retry} of {node.retries})...")
                continue
            node.status = ERROR
            return

    def _script(self, node: Node, argv: list[str], ret: int | None) -> int:
        macros = {
            "$JOB": node.name,
            "$RETRY": str(node.retry),
            "$RETURN": str(ret if ret is not None else ""),
        }
        args = [macros.get(a, a) for a in argv]
        exe = args[0] if os.path.isabs(args[0]) else str(self.dir / args[0])
        proc = subprocess.run([exe, *args[1:]], cwd=self.dir, capture_output=True, text=True)
        return proc.returncode

    # -- one job attempt (a new cluster) --------------------------------------------------
    def _submit_for(self, node: Node, cluster: int) -> htcondor2.Submit:
        if node.submit not in self._submit_text:
            self._submit_text[node.submit] = (self.dir / node.submit).read_text()
        sub = htcondor2.Submit(self._submit_text[node.submit])
        for key, value in node.vars.items():
            sub[key] = value
        sub["Cluster"] = str(cluster)
        sub["ClusterId"] = str(cluster)
        sub["Process"] = "0"
        return sub

    def _run_job(self, node: Node) -> int | None:
        cluster = self._next_cluster
        self._next_cluster += 1
        node.clusters.append(cluster)
        sub = self._submit_for(node, cluster)
        get = lambda key, default="": (sub.expand(key) if key in sub else default).strip()  # noqa: E731
        initialdir = Path(get("initialdir") or self.dir)
        env = {}
        for item in split_arguments(get("environment").strip('"')):
            name, _, value = item.partition("=")
            env[name] = value
        args = split_arguments(get("arguments").strip('"'))
        executable = get("executable")
        output = Path(get("output"))
        error = Path(get("error"))
        if output != error:
            raise AssertionError("submit descriptions must merge stdout and stderr into one file")
        transfer = get("should_transfer_files", "NO").upper() == "YES"
        self.events.submit(cluster, node.name)

        ad = classad2.ClassAd()
        ad["NumJobStarts"] = 0
        ad["JobStatus"] = 1
        ad["RequestMemory"] = classad2.ExprTree(get("request_memory", "1024"))
        release = classad2.ExprTree(get("periodic_release", "false") or "false")
        remove = classad2.ExprTree(get("periodic_remove", "false") or "false")
        while True:
            scratch = self.scratch_root / f"{node.name}.{cluster}.{int(ad['NumJobStarts'])}"
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            if transfer:
                missing = self._transfer_in(get("transfer_input_files"), initialdir, scratch)
                if missing:
                    self.events.held(cluster, f"Transfer input files failure: {missing} not found", 13)
                    node.held_reason = f"Transfer input files failure: {missing} not found"
                    return None
            request_memory = int(ad.eval("RequestMemory"))
            self.events.execute(cluster)
            ad["NumJobStarts"] = int(ad["NumJobStarts"]) + 1
            ad["JobStatus"] = 2
            job_env = {**env, "_CONDOR_SCRATCH_DIR": str(scratch)}
            with open(output, "a") as log:
                proc = subprocess.run(
                    [executable, *args],
                    cwd=scratch if transfer else initialdir,
                    env=job_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            usage_file = scratch / MEMORY_FILE
            usage = int(usage_file.read_text()) if usage_file.exists() else 1
            if usage > request_memory:
                reason = f"Job has gone over cgroup memory limit of {request_memory} megabytes. Peak usage: {usage} megabytes."
                self.events.held(cluster, reason, 34)
                ad.update(
                    {
                        "JobStatus": 5,
                        "HoldReasonCode": 34,
                        "HoldReasonSubCode": 0,
                        "MemoryUsage": usage,
                        "HoldReason": reason,
                        "EnteredCurrentStatus": int(time.time()),
                    }
                )
                if self._eval(ad, remove):
                    self.events.aborted(cluster, "via periodic_remove")
                    return REMOVED_RETURN
                if self._eval(ad, release):
                    self.events.released(cluster, "via periodic_release")
                    ad.update({"LastHoldReasonCode": 34, "LastHoldReasonSubCode": 0, "JobStatus": 1})
                    for k in ("HoldReasonCode", "HoldReasonSubCode", "HoldReason"):
                        del ad[k]
                    continue
                node.held_reason = reason
                return None
            ret = proc.returncode
            if ret < 0:
                self.events.terminated(
                    cluster, signal=-ret, memory_usage=usage, request_memory=request_memory
                )
                return ret
            if ret == 0 and transfer:
                remaps = get("transfer_output_remaps").strip('"')
                missing = self._transfer_out(get("transfer_output_files"), scratch, initialdir, remaps)
                if missing:
                    reason = f"Transfer output files failure: {missing} was not produced"
                    self.events.held(cluster, reason, 12)
                    node.held_reason = reason
                    return None
            self.events.terminated(
                cluster, return_value=ret, memory_usage=usage, request_memory=request_memory
            )
            return ret

    @staticmethod
    def _eval(ad: classad2.ClassAd, expr: classad2.ExprTree) -> bool:
        value = expr.eval(ad)
        return value is True or (isinstance(value, int) and value != 0)

    @staticmethod
    def _transfer_in(spec: str, initialdir: Path, scratch: Path) -> str | None:
        for item in filter(None, (s.strip() for s in spec.split(","))):
            src = Path(item) if os.path.isabs(item) else initialdir / item
            if not src.exists():
                return item
            if src.is_dir():  # a directory named without a trailing slash arrives as itself
                shutil.copytree(src, scratch / src.name, dirs_exist_ok=True)
            else:
                shutil.copy(src, scratch / src.name)  # follows symbolic links, like HTCondor
        return None

    @staticmethod
    def _transfer_out(spec: str, scratch: Path, initialdir: Path, remaps: str = "") -> str | None:
        pairs = (r.partition("=") for r in remaps.split(";") if r.strip())
        where = {k.strip(): v.strip() for k, _, v in pairs}
        if spec.strip() == '""':  # HTCondor's explicit empty list: nothing comes back
            return None
        for item in filter(None, (s.strip() for s in spec.split(","))):
            src = scratch / item
            if not src.exists():
                return item
            target = initialdir / where.get(src.name, src.name)  # an absolute remap replaces initialdir
            if src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True)
                continue
            tmp = target.with_name(target.name + ".part")
            shutil.copy(src, tmp)
            tmp.replace(target)
        return None

    # -- DAGMan's own outputs --------------------------------------------------------------
    def _write_rescue(self, dag: Dag) -> None:
        existing = latest_rescue(self.dag_path)
        number = int(existing.name[-3:]) + 1 if existing else 1
        path = self.dir / f"{self.dag_path.name}.rescue{number:03d}"
        lines = [f"# Rescue DAG file, created after running the {self.dag_path.name} DAG file"]
        lines += [f"DONE {n.name}" for n in dag.nodes.values() if n.status == DONE]
        path.write_text("\n".join(lines) + "\n")
        self.log(f"Writing Rescue DAG file {path.name}")

    def _write_node_status(self, dag: Dag, exit_code: int) -> None:
        if not dag.node_status_file:
            return
        nodes = list(dag.nodes.values()) + ([dag.final] if dag.final else [])
        count = lambda s: sum(1 for n in nodes if n.status == s)  # noqa: E731
        ads = [
            '[\n  Type = "DagStatus";\n'
            f'  DagFiles = {{ "{self.dag_path.name}" }};\n  Timestamp = {int(time.time())};\n'
            f"  DagStatus = {0 if exit_code == 0 else 2};\n  NodesTotal = {len(nodes)};\n"
            f"  NodesDone = {count(DONE)};\n  NodesPre = {count(PRERUN)};\n  NodesQueued = {count(SUBMITTED)};\n"
            f"  NodesPost = {count(POSTRUN)};\n  NodesReady = {count(READY)};\n  NodesUnready = {count(NOT_READY)};\n"
            f"  NodesFutile = {count(FUTILE)};\n  NodesFailed = {count(ERROR)};\n"
            f"  JobProcsHeld = {sum(1 for n in nodes if n.held_reason)};\n  JobProcsIdle = 0;\n]\n"
        ]
        for n in nodes:
            ads.append(
                f'[\n  Type = "NodeStatus";\n  Node = "{n.name}";\n'
                f'  NodeStatus = {n.status}; /* "{STATUS_NAMES[n.status]}" */\n'
                f'  StatusDetails = "{"held" if n.held_reason else ""}";\n  RetryCount = {n.retry};\n'
                f"  JobProcsQueued = {1 if n.status == SUBMITTED else 0};\n"
                f"  JobProcsHeld = {1 if n.held_reason else 0};\n]\n"
            )
        ads.append(f'[\n  Type = "StatusEnd";\n  EndTime = {int(time.time())};\n  NextUpdate = 0;\n]\n')
        (self.dir / dag.node_status_file).write_text("".join(ads))


def run_dag(dag_path: Path, scratch_root: Path | None = None) -> RunResult:
    """Run the DAG at ``dag_path`` (and its latest rescue DAG, like DAGMan's autorescue)."""
    return DagmanRunner(dag_path, scratch_root).run()
