"""Run an emitted DAG with DAGMan's semantics, without HTCondor daemons (test support).

No schedd exists on test machines, so this runner executes what the translator wrote,
reading only the files: the ``.dag`` (JOB, VARS, PARENT/CHILD, RETRY/UNLESS-EXIT,
SCRIPT PRE/POST, PRIORITY, CATEGORY/MAXJOBS, FINAL, DONE, the latest rescue DAG)
and the submit descriptions, expanded per node by ``htcondor2.Submit`` exactly as
DAGMan would (``VARS`` plus DAGMan's own macros ``JOB``, ``RETRY``, ``DAG_STATUS``,
``FAILED_COUNT``). Each DAGMan attempt is a new cluster; inside a cluster the schedd's
``max_retries`` / ``retry_until`` requeue the job (``OnExitRemove``). Each job runs with only
the environment its submit description names plus ``$_CONDOR_SCRATCH_DIR`` (as DAGMan's node jobs do);
with ``should_transfer_files = YES`` it runs in a fresh scratch directory holding only its
transferred inputs, and on success its outputs are copied back into ``initialdir``.

It refuses what DAGMan 25.x refuses (`DagParseError`, with DAGMan's message; the run then
ends like DAGMan's, exit 1 before any node): RETRY, PRIORITY, CATEGORY and ABORT-DAG-ON on
the FINAL node, edges to or from it, reserved or ``+``-bearing node names, duplicate nodes,
commands naming unknown nodes, malformed RETRY / SCRIPT / VARS / PRIORITY / CATEGORY lines
and ``VARS`` names starting with ``queue`` (src/condor_utils/dag_parser.cpp and
src/condor_dagman/parse.cpp). Relative file names in the DAG (``CONFIG``, submit files,
``NODE_STATUS_FILE``) resolve against the directory the runner is started from (``cwd``), as
DAGMan's do against the directory ``condor_submit_dag`` ran in.

Memory: a job may claim a peak memory by writing ``.bps_test_memory_mb`` into its scratch
directory. Above ``request_memory`` the pool's policy (``pool_memory_policy``) acts as a real
pool does: ``cgroup`` holds with code 34, ``startd`` (``HOLD_IF_MEMORY_EXCEEDED``) evicts and
holds with 21/102, ``system_periodic_hold`` holds with 26/34, ``none`` does nothing; the job's
own ``periodic_hold`` is evaluated too (3/its subcode). The submit description's
``periodic_release`` / ``periodic_remove`` are then evaluated with ``classad2``, so memory
escalation is exercised by the real ClassAd expressions.

It writes what DAGMan and the schedd would: the job event log (``<dag>.nodes.log``,
classic format, the submit event's notes in 25.x's structured form), ``<dag>.dagman.out``,
``<dag>.metrics``, the node status file and, after a failure or removal, a rescue DAG.
The DAG's exit status is the FINAL node's when there is one (DAGMan's rule), else 1 if a
node failed. ``cancel_after=N`` removes the DAG (``condor_rm``) once N nodes finished:
DAG status 4, rescue DAG, then the FINAL node. Jobs run one at a time in priority order
(deterministic tests).

The halt file ``<dag>.halt`` (what ``bps cancel`` creates) acts as in DAGMan 25.x
(src/condor_dagman/dagman_main.cpp ``condor_event_timer``, dag.cpp ``SubmitReadyJobs``):
it is looked for before every submission, by anyone who creates it (a job, a POST script,
``halt_after=N`` once N nodes finished, or a file there before the run). Once seen, the DAG
is halted for good (deleting the file does not resume it) and its status is 6: no node job
is submitted any more (not even a DAGMan retry), while a finished job's POST script still runs. With nothing running, DAGMan logs ``Exiting
because DAG is halted and no jobs or scripts are running``, writes a rescue DAG and runs
the FINAL node with ``$(DAG_STATUS)`` 6; the DAG then exits with the FINAL node's status.
"""

from __future__ import annotations

import json
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
#: DAGMan's return value of a node whose job was removed (DAG_ERROR_CONDOR_JOB_ABORTED).
ABORTED_RETURN = -1002
REMOVED_RETURN = ABORTED_RETURN
#: DAGMan's DagStatus values (dag.h).
DAG_STATUS_OK, DAG_STATUS_ERROR, DAG_STATUS_NODE_FAILED, DAG_STATUS_ABORT, DAG_STATUS_RM = range(5)
DAG_STATUS_HALTED = 6
#: Node names DAGMan refuses (dag_commands.cpp DAG::RESERVED, case-insensitive).
RESERVED_NAMES = {"PARENT", "CHILD", "ALL_NODES"}
#: What a pool does to a job over its request_memory: (hold code, subcode, reason, evicted first).
POOL_MEMORY_POLICIES = {
    "cgroup": (
        34,
        0,
        "Job has gone over cgroup memory limit of {request} megabytes. Peak usage: {usage} megabytes.",
        False,
    ),
    "startd": (21, 102, "Error from slot1_1@vm: memory usage exceeded request_memory", True),
    "system_periodic_hold": (26, 34, "memory usage {usage} MB exceeded request_memory {request} MB", False),
    "none": None,
}


class DagParseError(ValueError):
    """DAGMan refuses the DAG file (the message is DAGMan's ``ERROR:`` line)."""


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
    final: bool = False
    parents: set[str] = field(default_factory=set)
    children: set[str] = field(default_factory=set)
    # results
    status: int = NOT_READY
    retry: int = 0
    clusters: list[int] = field(default_factory=list)
    result: int | None = None
    held_reason: str | None = None
    #: job starts over all clusters (schedd retries and DAGMan retries)
    starts: int = 0


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


def _int(token: str, what: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise DagParseError(f"Invalid {what} '{token}'") from None


def _check_node_name(name: str) -> None:
    if name.upper() in RESERVED_NAMES:
        raise DagParseError("Node name is a reserved word")
    if "+" in name:
        raise DagParseError("Node name contains illegal charater")


def parse_dag(path: Path) -> Dag:
    """Parse a DAG file as DAGMan 25.x does; what DAGMan refuses raises `DagParseError`.

    Like DAGMan, node definitions (JOB, FINAL) are read first, then every other command,
    so a command may name a node defined further down."""
    path = Path(path)
    dag = Dag(path=path, nodes={})
    lines = []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            try:
                lines.append((lineno, line, _split(line)))
            except ValueError as exc:
                raise DagParseError(f"{path}:{lineno}: {exc}") from exc
    for first_pass in (True, False):
        for lineno, line, t in lines:
            cmd = t[0].upper()
            if (cmd in ("JOB", "FINAL")) != first_pass:
                continue
            try:
                _parse_command(dag, cmd, t)
            except DagParseError as exc:
                raise DagParseError(f"{exc} ({path}:{lineno}: {line!r})") from None
            except (IndexError, KeyError, ValueError) as exc:
                raise DagParseError(f"{path}:{lineno}: cannot parse {line!r}: {exc}") from exc
    return dag


def _parse_command(dag: Dag, cmd: str, t: list[str]) -> None:
    if cmd in ("JOB", "FINAL"):
        if len(t) < 3:
            raise DagParseError("Missing node name" if len(t) < 2 else "Missing submit description")
        _check_node_name(t[1])
        if t[1] in dag.nodes or (dag.final is not None and dag.final.name == t[1]):
            raise DagParseError(f"Node {t[1]} already exists in DAG.")
        if cmd == "JOB":
            dag.nodes[t[1]] = Node(t[1], t[2], done="DONE" in (x.upper() for x in t[3:]))
        else:
            dag.final = Node(t[1], t[2], final=True)
    elif cmd == "VARS":
        node = _node(dag, t[1])
        pairs = t[2:]
        if pairs and pairs[0].upper() in ("PREPEND", "APPEND"):
            pairs = pairs[1:]
        if not pairs:
            raise DagParseError("No key=value pairs specified")
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq or not key:
                raise DagParseError("Key value pair missing value: Failed to locate operator")
            if key.lower().startswith("queue"):
                raise DagParseError(f"Illegal variable name '{key}': name can not begin with 'queue'")
            if key.startswith("+"):
                key = "My." + key[1:]
            node.vars[key] = unquote_vars_value(value)
    elif cmd == "PARENT":
        if "CHILD" not in (x.upper() for x in t):
            raise DagParseError("Missing CHILD specifier")
        k = [x.upper() for x in t].index("CHILD")
        parents, children = t[1:k], t[k + 1 :]
        if not children:
            raise DagParseError("No children node(s) specified")
        for p in parents:
            if _node(dag, p).final:
                raise DagParseError(
                    f"Unable to add child dependecies for node {p}: Tried to add a child to a Final node"
                )
        for c in children:
            if _node(dag, c).final:
                raise DagParseError(
                    f"Unable to add parent dependenies for node {c}: Tried to add a parent to a Final node"
                )
        for p in parents:
            for c in children:
                dag.nodes[p].children.add(c)
                dag.nodes[c].parents.add(p)
    elif cmd == "RETRY":
        node = _node(dag, t[1])
        if node.final:
            raise DagParseError(f"RETRY node {node.name} can not have a retry specification")
        if len(t) < 3:
            raise DagParseError("Missing max retry value")
        retries = _int(t[2], "max retry value")
        if retries < 0:
            raise DagParseError(f"Invalid max retry value '{t[2]}' (Must be positive integer)")
        node.retries = retries
        if len(t) > 3:
            if t[3].upper() not in ("UNLESS-EXIT", "UNLESS_EXIT"):
                raise DagParseError(f"Unexpected token '{t[3]}'")
            if len(t) < 5:
                raise DagParseError("UNLESS-EXIT missing exit code")
            code = _int(t[4], "UNLESS-EXIT code")
            node.unless_exit = code if code != 0 else None  # DAGMan: UNLESS-EXIT 0 means none
            if len(t) > 5:
                raise DagParseError(f"Unexpected token '{t[5]}'")
    elif cmd == "SCRIPT":
        rest = t[1:]
        while rest and rest[0].upper() in ("DEFER", "DEBUG"):
            if rest[0].upper() == "DEFER":
                if len(rest) < 3:
                    raise DagParseError(
                        "DEFER missing status value" if len(rest) < 2 else "DEFER missing time value"
                    )
                _int(rest[1], "DEFER status value")
                _int(rest[2], "DEFER time value")
            elif len(rest) < 3 or rest[2].upper() not in ("STDOUT", "STDERR", "ALL"):
                raise DagParseError("DEBUG missing output stream type (STDOUT, STDERR, ALL)")
            rest = rest[3:]
        if not rest or rest[0].upper() not in ("PRE", "POST", "HOLD"):
            raise DagParseError(
                "Missing script type (PRE, POST, HOLD) and optional sub-commands (DEFER, DEBUG)"
            )
        if len(rest) < 2:
            raise DagParseError("No node name specified")
        if len(rest) < 3:
            raise DagParseError("No script specified")
        which, name, *argv = rest
        if which.upper() != "HOLD":
            setattr(_node(dag, name), which.lower(), argv)
        else:
            _node(dag, name)
    elif cmd == "PRIORITY":
        node = _node(dag, t[1])
        if node.final:
            raise DagParseError(f"FINAL node {node.name} can not have a priority")
        if len(t) < 3:
            raise DagParseError("Missing priority value")
        node.priority = _int(t[2], "priority value")
        if len(t) > 3:
            raise DagParseError(f"Unexpected token '{t[3]}'")
    elif cmd == "CATEGORY":
        if len(t) < 3:
            raise DagParseError("No category name specified")
        if len(t) > 3:
            raise DagParseError(f"Unexpected token '{t[3]}'")
        node = _node(dag, t[1])
        if node.final:
            raise DagParseError(f"FINAL node {node.name} can not be added to a category")
        node.category = t[2]
    elif cmd == "ABORT-DAG-ON":
        if _node(dag, t[1]).final:
            raise DagParseError(f"FINAL node {t[1]} cannot have an ABORT-DAG-ON specification.")
        raise DagParseError("ABORT-DAG-ON is not supported by this test runner")
    elif cmd == "MAXJOBS":
        dag.maxjobs[t[1]] = _int(t[2], "MAXJOBS limit")
    elif cmd == "CONFIG":
        dag.config = t[1]
    elif cmd == "NODE_STATUS_FILE":
        dag.node_status_file = t[1]
    elif cmd == "DONE":
        node = _node(dag, t[1])
        if not node.final:  # DAGMan warns and ignores DONE on a FINAL node
            node.done = True
    else:
        raise DagParseError(f"'{t[0]}' is not a valid DAG command")


def _node(dag: Dag, name: str) -> Node:
    if dag.final is not None and dag.final.name == name:
        return dag.final
    if name not in dag.nodes:
        raise DagParseError(f"Unknown node {name} referenced.")
    return dag.nodes[name]


def latest_rescue(dag_path: Path) -> Path | None:
    found = sorted(dag_path.parent.glob(dag_path.name + ".rescue[0-9][0-9][0-9]"))
    return found[-1] if found else None


@dataclass
class RunResult:
    dag: Dag | None
    exit_code: int
    order: list[str]
    dag_status: int = DAG_STATUS_OK
    error: str | None = None

    def status(self, node: str) -> str:
        assert self.dag is not None
        return STATUS_NAMES[_node(self.dag, node).status]


class DagmanRunner:
    """Run one DAG to completion (see the module docstring)."""

    def __init__(
        self,
        dag_path: Path,
        scratch_root: Path | None = None,
        first_cluster: int | None = None,
        *,
        cwd: Path | None = None,
        pool_memory_policy: str = "cgroup",
        cancel_after: int | None = None,
        halt_after: int | None = None,
    ):
        self.dag_path = Path(dag_path).absolute()
        self.dir = self.dag_path.parent
        self.cwd = Path(cwd or os.getcwd()).absolute()
        self.scratch_root = Path(scratch_root or self.dir / "_scratch")
        self.events = EventLogWriter(self.dir / (self.dag_path.name + ".nodes.log"))
        self.out = self.dir / (self.dag_path.name + ".dagman.out")
        self._submit_text: dict[str, str] = {}
        self._next_cluster = first_cluster or self._cluster_start()
        if pool_memory_policy not in POOL_MEMORY_POLICIES:
            raise ValueError(f"unknown pool memory policy {pool_memory_policy!r}")
        self.pool_memory_policy = pool_memory_policy
        self.cancel_after = cancel_after
        self.halt_after = halt_after
        self.halt_file = self.dir / (self.dag_path.name + ".halt")
        self.halted = False
        self.dag_status = DAG_STATUS_OK
        self.failed_count = 0
        self.batch_name = (
            self.dag_path.name[: -len(".dag")] if self.dag_path.name.endswith(".dag") else self.dag_path.name
        )

    def _cluster_start(self) -> int:
        log = self.events.path
        return 1 + (log.read_text().count("Job submitted") if log.exists() else 0)

    def log(self, text: str) -> None:
        with self.out.open("a") as f:
            f.write(f"{time.strftime('%m/%d/%y %H:%M:%S')} {text}\n")

    def _resolve(self, name: str) -> Path:
        """A file named in the DAG: relative names resolve against the caller's directory, as in DAGMan."""
        return Path(name) if os.path.isabs(name) else self.cwd / name

    # -- main loop ----------------------------------------------------------------------
    def run(self) -> RunResult:
        started = time.time()
        self.log("******************************************************")
        self.log(
            f"** condor_scheduniv_exec.0.0 (CONDOR_DAGMAN) STARTING UP: DAGMan starting {self.dag_path.name}"
        )
        try:
            dag = parse_dag(self.dag_path)
            if dag.config is not None and not self._resolve(dag.config).is_file():
                raise DagParseError(f"Unable to read config file {self._resolve(dag.config)}")
            for node in list(dag.nodes.values()) + ([dag.final] if dag.final else []):
                if not self._resolve(node.submit).is_file():
                    raise DagParseError(
                        f"submit file {self._resolve(node.submit)} of node {node.name} does not exist"
                    )
        except DagParseError as exc:
            self.log(f"ERROR: {exc}")
            self.log("EXITING WITH STATUS 1")
            return RunResult(None, 1, [], DAG_STATUS_ERROR, str(exc))
        rescue = latest_rescue(self.dag_path)
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
        finished = 0
        while True:
            if self.cancel_after is not None and finished >= self.cancel_after:
                self.log("Received SIGUSR1")
                self.log("Aborting DAG...")
                self.dag_status = DAG_STATUS_RM
                break
            if self.halt_after is not None and finished >= self.halt_after:
                self.halt_file.touch()
            halted = self._is_halted()
            ready = [
                dag.nodes[n]
                for n in pending
                if all(dag.nodes[p].status == DONE for p in dag.nodes[n].parents)
            ]
            if not ready:
                break
            if halted:
                for waiting in ready:
                    waiting.status = READY
                self.log("Exiting because DAG is halted and no jobs or scripts are running")
                break
            node = max(ready, key=lambda n: (n.priority, -list(dag.nodes).index(n.name)))
            pending.discard(node.name)
            order.append(node.name)
            self._run_node(node)
            finished += 1
            if node.status == ERROR:
                self.failed_count += 1
                if self.dag_status == DAG_STATUS_OK:
                    self.dag_status = DAG_STATUS_NODE_FAILED
                self._mark_futile(dag, node)
                pending -= {n for n in pending if dag.nodes[n].status == FUTILE}
        failed = any(n.status in (ERROR, FUTILE) for n in dag.nodes.values())
        held = any(n.status == SUBMITTED for n in dag.nodes.values())
        incomplete = (
            failed
            or held
            or self.dag_status == DAG_STATUS_RM
            or (self.halted and any(n.status != DONE for n in dag.nodes.values()))
        )
        if incomplete:
            self._write_rescue(dag)
        if dag.final is not None:
            order.append(dag.final.name)
            self.log(f"Starting final node {dag.final.name}")
            self._run_node(dag.final)
            # DAGMan's rule: with a FINAL node, the DAG ends with the FINAL node's status.
            exit_code = 0 if dag.final.status == DONE else 1
        else:
            exit_code = 1 if incomplete else 0
        self.log(f"DAG status: {self.dag_status}")
        self._write_node_status(dag, exit_code)
        self._write_metrics(dag, exit_code, started, rescue)
        self.log(f"EXITING WITH STATUS {exit_code}")
        return RunResult(dag, exit_code, order, self.dag_status)

    def _is_halted(self) -> bool:
        """Whether the DAG is halted: once its halt file was seen, for good (as DAGMan)."""
        if not self.halted and self.halt_file.exists():
            self.halted = True
            self.dag_status = DAG_STATUS_HALTED
        return self.halted

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
            if node.retry < node.retries and not retry_forbidden and not node.final:
                if self._is_halted():  # the retry would be a new submission: not while halted
                    node.status = READY
                    return
                node.retry += 1
                self.log(f"Retrying node {node.name} (retry #{node.retry} of {node.retries})...")
                continue
            node.status = ERROR
            return

    def _macros(self, node: Node) -> dict[str, str]:
        """DAGMan's own macros for a node's submit description and its scripts (dagman_submit.cpp)."""
        return {
            "JOB": node.name,
            "RETRY": str(node.retry),
            "DAG_STATUS": str(self.dag_status),
            "FAILED_COUNT": str(self.failed_count),
        }

    def _script(self, node: Node, argv: list[str], ret: int | None) -> int:
        macros = {f"${k}": v for k, v in self._macros(node).items()}
        macros["$RETURN"] = str(ret if ret is not None else "")
        args = [macros.get(a, a) for a in argv]
        exe = args[0] if os.path.isabs(args[0]) else str(self.cwd / args[0])
        proc = subprocess.run([exe, *args[1:]], cwd=self.cwd, capture_output=True, text=True)
        return proc.returncode

    # -- one job attempt (a new cluster) --------------------------------------------------
    def _submit_for(self, node: Node, cluster: int) -> htcondor2.Submit:
        path = str(self._resolve(node.submit))
        if path not in self._submit_text:
            self._submit_text[path] = Path(path).read_text()
        sub = htcondor2.Submit(self._submit_text[path])
        for key, value in self._macros(node).items():
            sub[key] = value
        for key, value in node.vars.items():
            sub[key] = value
        sub["Cluster"] = str(cluster)
        sub["ClusterId"] = str(cluster)
        sub["Process"] = "0"
        return sub

    def _memory_hold(
        self, ad: classad2.ClassAd, periodic_hold: classad2.ExprTree | None, usage: int, request: int
    ):
        """(code, subcode, reason, evicted first) of the hold a job over its request gets, or None."""
        ad["MemoryUsage"] = usage
        if periodic_hold is not None and self._eval(ad, periodic_hold):
            sub = int(ad.eval("bps_test_hold_subcode")) if "bps_test_hold_subcode" in ad else 0
            reason = ad.eval("bps_test_hold_reason") if "bps_test_hold_reason" in ad else "periodic_hold"
            return 3, sub, str(reason), False
        if usage <= request:
            return None
        policy = POOL_MEMORY_POLICIES[self.pool_memory_policy]
        if policy is None:
            return None
        code, subcode, reason, evicted = policy
        return code, subcode, reason.format(usage=usage, request=request), evicted

    def _run_job(self, node: Node) -> int | None:
        cluster = self._next_cluster
        self._next_cluster += 1
        node.clusters.append(cluster)
        sub = self._submit_for(node, cluster)
        get = lambda key, default="": (sub.expand(key) if key in sub else default).strip()  # noqa: E731
        initialdir = Path(get("initialdir") or self.cwd)
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
        self.events.submit(cluster, node.name, self.batch_name)

        ad = classad2.ClassAd()
        ad["NumJobStarts"] = 0
        ad["NumJobCompletions"] = 0
        ad["JobStatus"] = 1
        ad["RequestMemory"] = classad2.ExprTree(get("request_memory", "1024"))
        release = classad2.ExprTree(get("periodic_release", "false") or "false")
        remove = classad2.ExprTree(get("periodic_remove", "false") or "false")
        hold_expr = get("periodic_hold")
        periodic_hold = classad2.ExprTree(hold_expr) if hold_expr else None
        if hold_expr:
            if get("periodic_hold_subcode"):
                ad["bps_test_hold_subcode"] = classad2.ExprTree(get("periodic_hold_subcode"))
            if get("periodic_hold_reason"):
                ad["bps_test_hold_reason"] = classad2.ExprTree(get("periodic_hold_reason"))
        max_retries = get("max_retries")
        until = get("retry_until")
        ad["JobMaxRetries"] = int(max_retries) if max_retries else 0
        # condor_submit's OnExitRemove when max_retries / retry_until are given (submit_utils.cpp).
        on_exit_remove = classad2.ExprTree(
            "NumJobCompletions > JobMaxRetries || ExitCode =?= 0" + (f" || ({until})" if until else "")
            if (max_retries or until)
            else "true"
        )
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
            self.events.execute(cluster, request_memory)
            if "Memory" in get("job_machine_attrs").split():
                ad["MachineAttrMemory0"] = request_memory  # the matched slot (as large as the request)
            ad["NumJobStarts"] = int(ad["NumJobStarts"]) + 1
            node.starts += 1
            ad["JobStatus"] = 2
            job_env = {**env, "_CONDOR_SCRATCH_DIR": str(scratch)}
            # Like the starter (O_TRUNC): each start of the job truncates its output.
            with open(output, "w") as log:
                proc = subprocess.run(
                    [executable, *args],
                    cwd=scratch if transfer else initialdir,
                    env=job_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            usage_file = scratch / MEMORY_FILE
            usage = int(usage_file.read_text()) if usage_file.exists() else 1
            hold = self._memory_hold(ad, periodic_hold, usage, request_memory)
            if hold is not None:
                code, subcode, reason, evicted = hold
                if evicted:
                    self.events.evicted(
                        cluster, code, subcode, reason, memory_usage=usage, request_memory=request_memory
                    )
                self.events.held(cluster, reason, code, subcode)
                ad.update(
                    {
                        "JobStatus": 5,
                        "HoldReasonCode": code,
                        "HoldReasonSubCode": subcode,
                        "MemoryUsage": usage,
                        "HoldReason": reason,
                        "EnteredCurrentStatus": int(time.time()),
                    }
                )
                if self._eval(ad, remove):
                    self.events.aborted(cluster, "via periodic_remove")
                    return ABORTED_RETURN
                if self._eval(ad, release):
                    self.events.released(cluster, "via periodic_release")
                    ad.update({"LastHoldReasonCode": code, "LastHoldReasonSubCode": subcode, "JobStatus": 1})
                    for k in ("HoldReasonCode", "HoldReasonSubCode", "HoldReason"):
                        del ad[k]
                    continue
                node.held_reason = reason
                return None
            ret = proc.returncode
            ad["NumJobCompletions"] = int(ad["NumJobCompletions"]) + 1
            if ret < 0:
                ad["ExitBySignal"] = True
                if "ExitCode" in ad:
                    del ad["ExitCode"]
            else:
                ad["ExitBySignal"] = False
                ad["ExitCode"] = ret
            if ret == 0 and transfer:
                remaps = get("transfer_output_remaps").strip('"')
                missing = self._transfer_out(get("transfer_output_files"), scratch, initialdir, remaps)
                if missing:
                    reason = f"Transfer output files failure: {missing} was not produced"
                    self.events.held(cluster, reason, 12)
                    node.held_reason = reason
                    return None
            if not self._eval(ad, on_exit_remove):
                # The schedd's retry (max_retries): the same cluster runs again.
                self.events.requeued(
                    cluster, return_value=None if ret < 0 else ret, signal=-ret if ret < 0 else None
                )
                ad["JobStatus"] = 1
                continue
            if ret < 0:
                self.events.terminated(
                    cluster, signal=-ret, memory_usage=usage, request_memory=request_memory
                )
                return ret
            self.events.terminated(
                cluster, return_value=ret, memory_usage=usage, request_memory=request_memory
            )
            return ret

    @staticmethod
    def _eval(ad: classad2.ClassAd, expr: classad2.ExprTree) -> bool:
        value = expr.eval(ad)
        return value is True or (isinstance(value, int) and not isinstance(value, bool) and value != 0)

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
        failed = [n.name for n in dag.nodes.values() if n.status == ERROR]
        lines = [
            "# Rescue DAG file, created after running",
            f"#   the {self.dag_path} DAG file",
            f"# Total number of Nodes: {len(dag.nodes) + (1 if dag.final else 0)}",
            f"# Nodes premarked DONE: {sum(1 for n in dag.nodes.values() if n.status == DONE)}",
            f"# Nodes that failed: {len(failed)}",
            "#   " + "".join(f"{n}," for n in failed) + "<ENDLIST>",
            "",
        ]
        lines += [f"DONE {n.name}" for n in dag.nodes.values() if n.status == DONE]
        path.write_text("\n".join(lines) + "\n")
        self.log(f"Writing Rescue DAG file {path.name}")

    def _write_node_status(self, dag: Dag, exit_code: int) -> None:
        if not dag.node_status_file:
            return
        nodes = list(dag.nodes.values()) + ([dag.final] if dag.final else [])
        count = lambda s: sum(1 for n in nodes if n.status == s)  # noqa: E731
        # The DAG's line uses node statuses: DONE "success" when it exits 0, else ERROR.
        if exit_code == 0:
            dag_status, note = DONE, "success"
        else:
            dag_status, note = ERROR, "removed" if self.dag_status == DAG_STATUS_RM else "failed"
        ads = [
            '[\n  Type = "DagStatus";\n'
            f'  DagFiles = {{\n    "{self.dag_path}"\n  }};\n  Timestamp = {int(time.time())};\n'
            f'  DagStatus = {dag_status}; /* "{STATUS_NAMES[dag_status]} ({note})" */\n  NodesTotal = {len(nodes)};\n'
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
        self._resolve(dag.node_status_file).write_text("".join(ads))

    def _write_metrics(self, dag: Dag, exit_code: int, started: float, rescue: Path | None) -> None:
        """``<dag>.metrics`` with the keys real DAGMan 25.x writes (tests/data/real-htcondor)."""
        nodes = list(dag.nodes.values())
        clusters = sum(len(n.clusters) for n in nodes) + (len(dag.final.clusters) if dag.final else 0)
        metrics = {
            "client": "condor_dagman",
            "version": "test-runner",
            "type": "metrics",
            "metrics_version": 2,
            "start_time": started,
            "end_time": time.time(),
            "duration": time.time() - started,
            "exitcode": exit_code,
            "dagman_id": "",
            "parent_dagman_id": "",
            "rescue_dag_number": int(rescue.name[-3:]) if rescue else 0,
            "has_final_node": dag.final is not None,
            "nodes": len(nodes) + (1 if dag.final else 0),
            "nodes_failed": sum(1 for n in nodes if n.status == ERROR)
            + (dag.final is not None and dag.final.status == ERROR),
            "nodes_succeeded": sum(1 for n in nodes if n.status == DONE and n.clusters)
            + (dag.final is not None and dag.final.status == DONE),
            "total_nodes": len(nodes) + (1 if dag.final else 0),
            "jobs_submitted": clusters,
            "DagStatus": self.dag_status,
        }
        (self.dir / (self.dag_path.name + ".metrics")).write_text(json.dumps(metrics, indent=4))


def run_dag(dag_path: Path, scratch_root: Path | None = None, **options) -> RunResult:
    """Run the DAG at ``dag_path`` (and its latest rescue DAG, like DAGMan's autorescue).

    ``options`` go to `DagmanRunner` (``cwd``, ``pool_memory_policy``, ``cancel_after``,
    ``halt_after``)."""
    return DagmanRunner(dag_path, scratch_root, **options).run()
