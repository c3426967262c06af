"""Can the jobs import the pipeline's task classes? Checked at prepare time, with the jobs' own environment.

A job rebuilds the pipeline's tasks from the graph, importing each task class with the
jobs' interpreter and the environment its workflow system gives it. That environment
is not the submitter's: an HTCondor job gets only what its submit file names
(``getenv = false``), so a task package that is only on the submitter's ``PYTHONPATH``
makes ``bps prepare`` succeed and every job fail at run time (exit 78, "cannot import
task class"). `check_task_imports` finds this at prepare time:

- each workflow service says what its jobs get (`JobEnvironment`: the interpreter and
  the complete environment it starts with; `bps.wms.base.WorkflowService.job_environment`);
- where that interpreter exists on the submit host (a shared software area), **one**
  subprocess started with exactly that interpreter and environment imports ``bps`` and
  every task class of the graph, the way a job does (`supertask.config.config.import_class`),
  and prepare refuses with the fix when any fails;
- where the interpreter is the one running ``bps`` and the jobs' Python-relevant
  variables are the submitter's (the local service), the classes are imported in
  this process: no subprocess;
- where the interpreter is not on the submit host, nothing can be checked: prepare says
  so, and which classes the jobs must be able to import (a warning, not an error).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Variables that change what an interpreter can import (besides its own location and
#: site-packages): when the jobs' values equal the submitter's and the interpreter is the
#: same, the check runs in this process.
IMPORT_VARIABLES: tuple[str, ...] = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONNOUSERSITE",
    "PYTHONUSERBASE",
    "PYTHONSAFEPATH",
    "PYTHONPLATLIBDIR",
    "HOME",
)

#: How long the import subprocess may take (a task package importing a large library
#: cold can take seconds; a hung import must not hang prepare).
TIMEOUT_S = 300.0

_MARK = "@@bps-job-import-check@@"

# Runs in the jobs' interpreter: imports what a job imports first, then each task class the
# way the job's pipeline loader does, and prints one JSON line after a marker (a task module
# may print on import).
_CHECK_CODE = f"""
import json, sys
classes = json.loads(sys.argv[1])
out = {{"version": sys.version.split()[0], "failed": {{}}}}
try:
    import bps.run_quantum
    from supertask.config.config import import_class
except BaseException as err:
    out["fatal"] = f"{{type(err).__name__}}: {{err}}"
else:
    for path in classes:
        try:
            import_class(path, what="task class")
        except BaseException as err:
            out["failed"][path] = str(err) if isinstance(err, ImportError) else f"{{type(err).__name__}}: {{err}}"
print("\\n{_MARK}" + json.dumps(out))
"""


@dataclass(frozen=True)
class JobEnvironment:
    """What a workflow system's jobs run with.

    Parameters
    ----------
    python : `str`
        Absolute path of the jobs' interpreter.
    env : `dict` [`str`, `str`]
        The complete environment the interpreter starts with, as the workflow system
        builds it (not merged with the submitter's unless the system does so).
    origin : `str`
        How ``env`` is made, for messages (``"HTCondor: getenv = false, the site's environment"``).
    """

    python: str
    env: dict[str, str]
    origin: str


@dataclass
class ImportCheck:
    """The outcome of `check_task_imports`: an error to refuse with, or a warning, or neither."""

    error: str | None = None
    warning: str | None = None
    #: task class path -> why the jobs cannot import it
    failed: dict[str, str] = field(default_factory=dict)


def task_classes(pipeline_yaml: str) -> dict[str, str]:
    """``{label: class path}`` of a graph's pipeline, read without importing any class.

    The graph holds the fully resolved pipeline: every task with its ``class``.
    """
    import yaml

    data = yaml.safe_load(pipeline_yaml) or {}
    tasks = data.get("tasks") or {}
    return {
        str(label): (entry if isinstance(entry, str) else str((entry or {}).get("class", "")))
        for label, entry in tasks.items()
    }


def check_task_imports(job_env: JobEnvironment, classes: Mapping[str, str]) -> ImportCheck:
    """Import every task class of ``classes`` (``{label: path}``) as the jobs will; wait for the answer.

    Returns an `ImportCheck` whose ``error`` is the one-line refusal with the fix, or
    whose ``warning`` says what could not be checked (the interpreter is not on this host,
    or the check itself could not run).
    """
    return start_task_import_check(job_env, classes).result()


class PendingCheck:
    """A check started by `start_task_import_check`; `result` waits for it.

    The subprocess runs while the caller goes on (prepare builds the workflow
    meanwhile), so on a machine with a spare core the check costs no wall time.
    """

    def __init__(
        self,
        job_env: JobEnvironment,
        by_path: dict[str, list[str]],
        done: ImportCheck | None = None,
        process: subprocess.Popen[str] | None = None,
        cwd: tempfile.TemporaryDirectory[str] | None = None,
    ):
        self.job_env = job_env
        self.by_path = by_path
        self._done = done
        self._process = process
        self._cwd = cwd

    def result(self) -> ImportCheck:
        if self._done is None:
            self._done = self._collect()
        return self._done

    def _collect(self) -> ImportCheck:
        python = self.job_env.python
        if self._process is None:
            fatal, failed = None, _import_here(self.by_path)
        else:
            outcome = self._finish(self._process)
            if isinstance(outcome, str):
                return ImportCheck(warning=outcome)
            fatal, failed = outcome
        if fatal is not None:
            return ImportCheck(
                error=(
                    f"the jobs' interpreter {python} cannot import bps ({fatal}) with the environment jobs get "
                    f"({self.job_env.origin}): every job would fail. Fix: install supertask into the jobs' software "
                    f"area ({python} -m pip install supertask) or point site.python at an interpreter that has it"
                )
            )
        if not failed:
            return ImportCheck()
        return ImportCheck(error=_refusal(self.job_env, failed, self.by_path), failed=failed)

    def _finish(self, process: subprocess.Popen[str]) -> tuple[str | None, dict[str, str]] | str:
        """``(fatal, failed)`` from the subprocess, or a warning if it did not complete."""
        python = self.job_env.python
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            return (
                f"importing the task classes with the jobs' interpreter {python} took over "
                f"{TIMEOUT_S:.0f} s: not checked whether jobs can import them"
            )
        finally:
            if self._cwd is not None:
                self._cwd.cleanup()
        _, mark, result = stdout.rpartition(_MARK)
        if not mark:
            last = (stderr.strip().splitlines() or ["no output"])[-1]
            return (
                f"the jobs' interpreter {python} did not complete the import check (exit {process.returncode}: "
                f"{last}): not checked whether jobs can import the task classes"
            )
        data = json.loads(result.strip().splitlines()[0])
        return data.get("fatal"), dict(data.get("failed") or {})


def start_task_import_check(job_env: JobEnvironment, classes: Mapping[str, str]) -> PendingCheck:
    """Start importing every task class of ``classes`` (``{label: path}``) as the jobs will.

    One subprocess of the jobs' interpreter, with their environment, in an empty
    directory; none when there is nothing to check, when the interpreter is not on
    this host (a warning), or when it is this interpreter with the submitter's
    import-relevant variables (imported here, in `PendingCheck.result`).
    """
    by_path: dict[str, list[str]] = {}
    for label, path in classes.items():
        by_path.setdefault(path, []).append(label)
    if not by_path:
        return PendingCheck(job_env, by_path, done=ImportCheck())
    python = job_env.python
    if not os.path.isabs(python) or not os.access(python, os.X_OK):
        warning = (
            f"the jobs' interpreter {python} is not on this host: could not check that jobs can import "
            f"the task classes {', '.join(sorted(by_path))}; a job that cannot fails with exit 78"
        )
        return PendingCheck(job_env, by_path, done=ImportCheck(warning=warning))
    if _same_as_here(job_env):
        return PendingCheck(job_env, by_path)
    cwd = tempfile.TemporaryDirectory(prefix="bps-import-check-")  # nothing importable in cwd
    try:
        process = subprocess.Popen(
            [python, "-c", _CHECK_CODE, json.dumps(sorted(by_path))],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=job_env.env,
            cwd=cwd.name,
            text=True,
        )
    except OSError as err:
        cwd.cleanup()
        warning = f"could not start the jobs' interpreter {python} ({err}): not checked whether jobs can import the task classes"
        return PendingCheck(job_env, by_path, done=ImportCheck(warning=warning))
    return PendingCheck(job_env, by_path, process=process, cwd=cwd)


def _same_as_here(job_env: JobEnvironment) -> bool:
    """The jobs run this interpreter with the submitter's import-relevant variables."""
    try:
        same_python = os.path.samefile(job_env.python, sys.executable)
    except OSError:
        return False
    return same_python and all(job_env.env.get(k) == os.environ.get(k) for k in IMPORT_VARIABLES)


def _import_here(by_path: Mapping[str, list[str]]) -> dict[str, str]:
    from supertask.config.config import import_class

    failed: dict[str, str] = {}
    for path in by_path:
        try:
            import_class(path, what="task class")
        except Exception as err:  # any failure to import is the job's failure too
            failed[path] = str(err) if isinstance(err, ImportError) else f"{type(err).__name__}: {err}"
    return failed


def _refusal(job_env: JobEnvironment, failed: Mapping[str, str], by_path: Mapping[str, list[str]]) -> str:
    """One line: which classes the jobs cannot import, why, and the fix."""
    what = "; ".join(
        f"{path} (label{'s' if len(by_path[path]) > 1 else ''} {', '.join(by_path[path])}): "
        f"{reason.removeprefix(f'cannot import task class {path!r}: ')}"
        for path, reason in sorted(failed.items())
    )
    job_pythonpath = job_env.env.get("PYTHONPATH")
    seen_as = f"PYTHONPATH={job_pythonpath}" if job_pythonpath else "no PYTHONPATH"
    fix = f"install the task package into the jobs' software area ({job_env.python} -m pip install PACKAGE)"
    here = _submitter_locations(failed)
    if here:
        fix += (
            f", or give the jobs the directory it is in here: site: {{environment: {{PYTHONPATH: {':'.join(here)}}}}} "
            "in the submit YAML (jobs do not get the submitter's PYTHONPATH)"
        )
    return (
        f"jobs cannot import task class{'es' if len(failed) > 1 else ''} {what} -- checked with the jobs' "
        f"interpreter {job_env.python} and the environment they get ({job_env.origin}; {seen_as}): every job "
        f"of {'these labels' if len(failed) > 1 else 'that label'} would fail with exit 78. Fix: {fix}"
    )


def _submitter_locations(failed: Mapping[str, str]) -> list[str]:
    """Entries of the submitter's ``PYTHONPATH`` that hold the failing classes' top-level packages."""
    entries = [e for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e]
    found: list[str] = []
    for path in failed:
        top = path.split(":")[0].split(".")[0]
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue
        origin = spec.origin if spec is not None else None
        if spec is not None and spec.submodule_search_locations:
            origin = next(iter(spec.submodule_search_locations), origin)
        if not origin:
            continue
        for entry in entries:
            resolved = str(Path(entry).resolve())
            if str(Path(origin).resolve()).startswith(resolved + os.sep) and resolved not in found:
                found.append(resolved)
    return found


def submitter_environment(site_environment: Mapping[str, str], python: str, origin: str) -> JobEnvironment:
    """Jobs that inherit the submitter's environment, plus the site's variables."""
    env = dict(os.environ)
    env.update({k: str(v) for k, v in site_environment.items()})
    return JobEnvironment(python=python, env=env, origin=origin)
