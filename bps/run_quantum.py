"""``run_quantum``: the entry point of every batch job.

::

    run_quantum --graph FILE --quantum ID [--quantum ID ...] [--repo ROOT] [--scratch DIR]
                [--job NAME] [--manifest-dir DIR]

Loads only its quanta from the shared graph file (checksums verified by the graph
reader), links their inputs into a fresh scratch directory (``--scratch``, else
``$_CONDOR_SCRATCH_DIR``, else the system temporary directory), runs each task's
``runQuantum`` in dependency order through the core runner with a `QuantumButler` over
scratch that never connects to the registry (DMTN-055 section 8), and stages each
quantum's outputs back atomically, recording them in the job's manifest. The final
job (``bps finalize``) registers what the manifests list.

Restarting is safe at any point: outputs appear under their final names only
complete, and the manifest records a quantum only once all its outputs are staged.
A rerun skips recorded quanta whose files are intact; a job whose quanta are all
recorded exits at once without reading the graph. With shared staging an output is
published at its datastore path never over a registered dataset's file
(`bps.publish`): an earlier attempt's unregistered leftover is replaced, a registered
file (a plan made before its outputs were registered) fails the quantum with
`exit_codes.DATA_ERROR`.

No work is an outcome, not a failure (as in ``supertask run``): a quantum whose
task raises ``NoWorkFound`` (by type: the core runner's rule), or that is left without some input because the quanta
making it found no work, writes a tombstone (`bps.staging.write_tombstone`) for each
of its outputs, at the place the output would go, and is recorded like a success.
Workflow systems stage tombstones like any file; a consumer that stages one in
drops that input, exactly as the single-node executor does. The job exits 0.

Exit codes are those of `bps.exit_codes` (``run_quantum --help`` lists them):
codes in ``NO_RETRY`` mean a retry cannot help. Within a cluster, a failed quantum
stops only the quanta that need its outputs; the job still stages the rest and
exits with the failure's code.

This module is the command line; the job itself is `bps.job` (`bps.job.runner.run_job`),
a staging layer around the core runner that ``supertask run`` uses too
(`supertask.execution.single_quantum.run_quantum`). `run_job`, `JobError`, `JobResult`,
`SupertaskBackend` and `Placement` are importable from here as before.

Start-up is a hot path (every job pays it): this module imports only the standard
library at start, and the rest inside `main`, with the cyclic collector paused; the
command line prepare writes is read without `argparse` (`_parse_plain`), which is
imported only for any other line.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NoReturn

from . import exit_codes

if TYPE_CHECKING:
    import argparse

    from .job.backend import Backend

log = logging.getLogger("bps.run_quantum")

#: names importable from here, from the modules of `bps.job` (PEP 562: imported on first use)
_EXPORTS = {
    "run_job": "runner",
    "JobError": "runner",
    "JobResult": "runner",
    "SupertaskBackend": "backend",
    "Backend": "backend",
    "Store": "backend",
    "Placement": "placement",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"bps.job.{module}"), name)


def _read_locations(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    import json

    from .job.runner import JobError

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise JobError(exit_codes.MISSING_INPUT, f"input locations file {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise JobError(exit_codes.DATA_ERROR, f"input locations file {path} is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise JobError(
            exit_codes.DATA_ERROR, f"input locations file {path}: expected an object {{lfn: path}}"
        )
    return {str(k): str(v) for k, v in data.items()}


def _read_checks(path: str | None) -> dict[str, tuple[int | None, str | None]]:
    from .job.runner import JobError
    from .staging import read_input_checks

    if path and not Path(path).exists():
        # A submit-host file that a node without the submit directory cannot see (HTCondor
        # file transfer to another machine): the job runs, unverified, rather than fail.
        log.warning("input checks file %s is not visible here: staged-in inputs are not verified", path)
        return {}
    try:
        return read_input_checks(path)
    except ValueError as err:
        raise JobError(exit_codes.DATA_ERROR, str(err)) from None


# -- command line -------------------------------------------------------------------------


#: the options that take a value -> their attribute; ``--quantum`` repeats (a list), the others keep the last
_VALUE_OPTIONS = {
    "--graph": "graph",
    "--quantum": "quantum",
    "--repo": "repo",
    "--inputs-dir": "inputs_dir",
    "--outputs-dir": "outputs_dir",
    "--scratch": "scratch",
    "--job": "job",
    "--manifest-dir": "manifest_dir",
    "--input-locations": "input_locations",
    "--input-checks": "input_checks",
}
#: the options without a value -> their attribute (set to True)
_FLAG_OPTIONS = {"--keep-scratch": "keep_scratch", "-v": "verbose", "--verbose": "verbose"}
#: every attribute with its default, as `_parser` sets them
_DEFAULTS: dict[str, Any] = {
    **dict.fromkeys(_VALUE_OPTIONS.values()),
    "manifest_dir": ".",
    **dict.fromkeys(_FLAG_OPTIONS.values(), False),
}


def _parse_plain(argv: Sequence[str]) -> SimpleNamespace | None:
    """The arguments of a command line as workflows write it, read without `argparse`; None for any other.

    Such a line spells every option in full, with its value as the next argument, and
    gives ``--graph`` and ``--quantum``; a value that starts with ``-`` is left to
    argparse, whose rules for those are subtle. Anything else (``--help``, an
    abbreviation, ``--option=value``, a mistake) gives None: `main` then parses with
    `_parser`, so its results and messages are unchanged. Every job parses its line, and
    `argparse` with `gettext`, `locale` and `shutil` (its help formatter) costs a job
    more than all its own work of parsing.
    """
    values = dict(_DEFAULTS)
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag = _FLAG_OPTIONS.get(arg)
        if flag is not None:
            values[flag] = True
            i += 1
            continue
        dest = _VALUE_OPTIONS.get(arg)
        if dest is None or i + 1 == len(argv) or argv[i + 1].startswith("-"):
            return None
        value = argv[i + 1]
        values[dest] = [*(values[dest] or ()), value] if dest == "quantum" else value
        i += 2
    if values["graph"] is None or values["quantum"] is None:
        return None
    return SimpleNamespace(**values)


def _parser() -> argparse.ArgumentParser:
    """The command line's parser: for ``--help``, errors and any line `_parse_plain` leaves to it."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            self.print_usage(sys.stderr)
            self.exit(
                exit_codes.USAGE, f"run_quantum: error: {message} (exit {exit_codes.USAGE}: not retried)\n"
            )

    codes = "\n".join(f"  {code:3d}  {text}" for code, text in exit_codes.DESCRIPTIONS.items())
    p = _Parser(
        prog="run_quantum",
        description="Run quanta of a saved QuantumGraph with staging through a scratch directory.",
        epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--graph", required=True, help="the .qgraph file")
    p.add_argument(
        "--quantum", action="append", required=True, help="quantum id (repeat, or comma-separated)"
    )
    p.add_argument("--repo", help="data repository root (shared filesystem); default $BPS_REPO")
    p.add_argument("--inputs-dir", help="transfer staging: where the workflow system put the inputs (by lfn)")
    p.add_argument("--outputs-dir", help="transfer staging: where to leave the outputs (by lfn)")
    p.add_argument(
        "--scratch", help="scratch base directory; default $_CONDOR_SCRATCH_DIR, else the system tmp"
    )
    p.add_argument("--job", help="job name (names the manifest); default from the quantum ids")
    p.add_argument("--manifest-dir", default=".", help="directory of the job manifests (default: cwd)")
    p.add_argument(
        "--input-locations",
        help="JSON file {lfn: path} for overall inputs not at their datastore template path (written by prepare)",
    )
    p.add_argument(
        "--input-checks",
        help="JSON file {lfn: [size, checksum]} of registered overall inputs, verified on stage-in "
        "(written by prepare)",
    )
    p.add_argument("--keep-scratch", action="store_true", help="keep the scratch directory (debugging)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None, backend: Backend | None = None) -> int:
    """Console entry point; returns the exit code (see `bps.exit_codes`)."""
    from supertask.gc_pause import gc_paused

    # The imports of a job's start-up allocate only what lives as long as the job.
    with gc_paused():
        from .job.runner import JobError, run_job
    if argv is None:
        argv = sys.argv[1:]
    args = _parse_plain(argv) or _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        ids = [int(part) for value in args.quantum for part in value.split(",") if part.strip()]
    except ValueError:
        _parser().error(f"--quantum takes integer ids, got {args.quantum}")
    repo = args.repo or os.environ.get("BPS_REPO")
    if not repo and not args.outputs_dir:
        _parser().error("give --repo (or $BPS_REPO) for shared staging, or --inputs-dir and --outputs-dir")
    job = args.job or f"quanta-{'-'.join(str(i) for i in sorted(set(ids))[:5])}"
    try:
        locations = _read_locations(args.input_locations)
        checks = _read_checks(args.input_checks)
    except JobError as err:
        log.error("job %s failed: %s (exit %d: %s)", job, err, err.code, exit_codes.describe(err.code))
        return err.code
    try:
        result = run_job(
            args.graph,
            ids,
            repo=repo,
            job=job,
            manifest_dir=args.manifest_dir,
            inputs_dir=args.inputs_dir,
            outputs_dir=args.outputs_dir,
            scratch=args.scratch,
            keep_scratch=args.keep_scratch,
            input_locations=locations,
            input_checks=checks,
            backend=backend,
        )
    except JobError as err:
        log.error("job %s failed: %s (exit %d: %s)", job, err, err.code, exit_codes.describe(err.code))
        return err.code
    code = result.exit_code
    log.info(
        "job %s: ran %d, already done %d, failed %d, not run %d -> exit %d (%s)",
        job,
        len(result.ran),
        len(result.skipped_done),
        len(result.failed),
        len(result.blocked),
        code,
        exit_codes.describe(code),
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
