"""The ``bps`` command: prepare, submit, report, restart, cancel, finalize.

Thin: each command resolves its inputs, calls one function of ``bps`` and prints.
Expected errors (bad configuration, missing files, unreachable workflow system)
become a one-paragraph message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import exit_codes


def _handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .campaign_config import CampaignError
        from .clustering import ClusteringError
        from .config import ConfigError
        from .prepare import PrepareError
        from .wms.base import WmsError
        from .workflow_io import WorkflowFileError

        try:
            return func(*args, **kwargs)
        except (
            CampaignError,
            ConfigError,
            ClusteringError,
            PrepareError,
            WmsError,
            WorkflowFileError,
            FileNotFoundError,
        ) as err:
            click.echo(f"bps: error: {err}", err=True)
            sys.exit(1)

    return wrapper


def _config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("config_file", type=click.Path(), required=False),
        click.option(
            "--wms", type=click.Choice(["local", "htcondor", "pegasus", "parsl"]), help="Workflow system."
        ),
        click.option(
            "--compute-site",
            help="Site: <SITE>.yaml from $BPS_SITE_CONFIG_PATH, ./site_configs or the shipped sites.",
        ),
        click.option(
            "--submit-dir", type=click.Path(file_okay=False), help="Where to write the submit directory."
        ),
        click.option(
            "--qgraph",
            type=click.Path(dir_okay=False),
            help="Use this saved QuantumGraph (with --output-run: retargeted to that RUN).",
        ),
        click.option(
            "--output-run",
            help="RUN collection of the outputs. With a saved graph (--qgraph) planned for another RUN, "
            "the graph is retargeted: a copy writing to this RUN goes into the submit directory "
            "(like supertask run --qgraph FILE -o RUN).",
        ),
        click.option(
            "--subset", help="Plan only this subset or step of the pipeline (= pipeline: FILE#NAME)."
        ),
        click.option(
            "--skip-existing-in",
            "skip_existing_in",
            multiple=True,
            metavar="COLL",
            help="Plan no quantum whose outputs all exist in these collections; its consumers read them "
            "there (repeatable; comma-separated allowed; = skip_existing_in).",
        ),
        click.option(
            "--skip-existing",
            is_flag=True,
            default=None,
            help="Plan no quantum whose outputs all exist in the output run (= skip_existing: true).",
        ),
        click.option(
            "-j", "--jobs", type=click.IntRange(min=1), help="Parallel jobs (local workflow system)."
        ),
        click.option(
            "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set any key, e.g. retry.retries=5."
        ),
        click.option(
            "--show-config", is_flag=True, help="Print every resolved value and where it came from."
        ),
        click.option(
            "--resources-from",
            "resources_from",
            multiple=True,
            type=click.Path(exists=True, file_okay=False),
            help="Submit directory of an earlier run: each label's memory request from its measured peaks (repeatable).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _resolve(config_file: str | None, **cli: Any) -> Any:
    from .config import load_config, parse_cli_override

    sets = cli.pop("sets", ())
    overrides = {
        "wms": cli.get("wms"),
        "compute_site": cli.get("compute_site"),
        "submit_dir": cli.get("submit_dir"),
        "qgraph": cli.get("qgraph"),
        "output_run": cli.get("output_run"),
        "subset": cli.get("subset"),
        "local.jobs": cli.get("jobs"),
        "skip_existing_in": _collections(cli.get("skip_existing_in") or ()) or None,
        "skip_existing": cli.get("skip_existing") or None,
        "right_sizing.runs": list(cli["resources_from"]) if cli.get("resources_from") else None,
    }
    for text in sets:
        key, value = parse_cli_override(text)
        overrides[key] = value
    return load_config(config_file, overrides)


def _collections(values: tuple[str, ...]) -> list[str]:
    """Repeated options and comma-separated lists alike, as ``supertask qgraph`` takes them."""
    return [c.strip() for v in values for c in v.split(",") if c.strip()]


def _service(name: str, jobs: int | None = None) -> Any:
    from .wms.base import get_service

    service = get_service(name)
    if jobs is not None and hasattr(service, "jobs"):
        service.jobs = jobs
    return service


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debugging detail.")
def main(verbose: bool) -> None:
    """Batch processing: a QuantumGraph becomes a workflow of run_quantum jobs (local, HTCondor, Pegasus)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )


@main.command()
@_config_options
@_handle_errors
def prepare(config_file: str | None, show_config: bool, **cli: Any) -> None:
    """Write a submit directory for CONFIG_FILE; submit nothing."""
    from .prepare import prepare as do_prepare

    resolved = _resolve(config_file, **cli)
    if show_config:
        click.echo(resolved.show())
    prepared = do_prepare(resolved, service=_service(resolved.config.wms, resolved.config.local.jobs))
    for line in prepared.messages:
        click.echo(line)
    wf = prepared.workflow
    click.echo(
        f"prepared {len(wf.jobs)} jobs ({len(wf.labels())} labels) + final job in {prepared.submit_dir}"
    )
    if prepared.main_file is not None:
        click.echo(f"workflow file: {prepared.main_file}")


@main.command()
@_config_options
@_handle_errors
def submit(config_file: str | None, show_config: bool, **cli: Any) -> None:
    """Prepare CONFIG_FILE, then hand the workflow to its workflow system.

    CONFIG_FILE may also be a submit directory prepared earlier (``bps prepare``, or a
    submission that stopped because the workflow system was unreachable): it is
    submitted as it is.
    """
    from .prepare import prepare as do_prepare
    from .wms.base import write_run_record

    if config_file and Path(config_file).is_dir():
        _submit_prepared(Path(config_file), cli.get("jobs"))
        return
    resolved = _resolve(config_file, **cli)
    if show_config:
        click.echo(resolved.show())
    service = _service(resolved.config.wms, resolved.config.local.jobs)
    prepared = do_prepare(resolved, service=service)
    for line in prepared.messages:
        click.echo(line)
    click.echo(f"submit directory: {prepared.submit_dir}")
    run_id = service.submit(prepared.submit_dir)
    write_run_record(prepared.submit_dir, wms=resolved.config.wms, run_id=run_id)
    click.echo(f"submitted {run_id} with {resolved.config.wms}")
    if resolved.config.wms == "local":
        from supertask.states import RunState

        report = service.report(prepared.submit_dir)
        _print_report(report)
        click.echo(f"submit directory: {prepared.submit_dir}")
        if report.state != RunState.SUCCEEDED:
            sys.exit(1)


@main.command()
@click.argument("submit_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write a self-contained HTML report (timeline, memory, pipeline, failures) to this file.",
)
@_handle_errors
def report(submit_dir: str, html_file: str | None) -> None:
    """Per task label: succeeded, failed, running, pending; the log tail of each failure."""
    rep = _service(_wms_of(Path(submit_dir))).report(Path(submit_dir))
    _print_report(rep)
    if html_file:
        click.echo(f"run report: {write_html_report(Path(submit_dir), rep, Path(html_file))}")


def write_html_report(submit_dir: Path, rep: Any, path: Path) -> Path:
    """Write the HTML report of ``rep`` (a `RunReport` of ``submit_dir``) to ``path``."""
    from supertask.report.html import check_writable, write_html

    from .html_report import summary_from_report
    from .wms.base import WmsError

    problem = check_writable(path)
    if problem:
        raise WmsError(f"--html: {problem}")
    try:
        return write_html(summary_from_report(submit_dir, rep), path)
    except OSError as err:
        raise WmsError(f"--html: cannot write {path}: {err.strerror or err}") from None


def _submit_prepared(submit_dir: Path, jobs: int | None) -> None:
    """Submit a directory that was prepared earlier."""
    from .wms.base import WmsError, write_run_record

    if not (submit_dir / "workflow.json").exists():
        raise WmsError(
            f"{submit_dir} is a directory but not a prepared submit directory (no workflow.json): "
            "give a submit YAML file, or the directory `bps prepare` wrote"
        )
    wms = _wms_of(submit_dir)
    service = _service(wms, jobs)
    run_id = service.submit(submit_dir)
    write_run_record(submit_dir, wms=wms, run_id=run_id)
    click.echo(f"submitted {run_id} with {wms}")
    if wms == "local":
        from supertask.states import RunState

        report = service.report(submit_dir)
        _print_report(report)
        if report.state != RunState.SUCCEEDED:
            sys.exit(1)


def _restart_overrides(values: dict[str, Any], label_sets: tuple[str, ...]) -> dict[str, Any] | None:
    """Command-line restart changes as ``{key: value, "labels": {label: {key: value}}}``."""
    overrides: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
    for item in label_sets:
        label, sep, rest = item.partition(":")
        key, eq, raw = rest.partition("=")
        if not sep or not eq or not label or not key:
            raise click.BadParameter(f"{item!r}: expected LABEL:KEY=VALUE", param_hint="--label-set")
        try:
            value: Any = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                raise click.BadParameter(
                    f"{item!r}: {raw!r} is not a number", param_hint="--label-set"
                ) from None
        overrides.setdefault("labels", {}).setdefault(label, {})[key] = value
    return overrides or None


@main.command()
@click.argument("submit_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--retries", type=click.IntRange(min=0), help="New number of retries per job.")
@click.option("--memory-mb", type=click.IntRange(min=1), help="New memory request of every job.")
@click.option("--memory-max-mb", type=click.IntRange(min=1), help="New cap of memory escalation.")
@click.option("--memory-multiplier", type=click.FloatRange(min=1.0), help="New memory escalation factor.")
@click.option("--cpus", type=click.IntRange(min=1), help="New cpu request of every job.")
@click.option("--disk-mb", type=click.IntRange(min=1), help="New disk request of every job.")
@click.option("--walltime-s", type=click.IntRange(min=1), help="New walltime of every job.")
@click.option(
    "--label-set",
    "label_sets",
    multiple=True,
    metavar="LABEL:KEY=VALUE",
    help="Change one label only, e.g. coadd:memory_mb=8192 (repeatable).",
)
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Parallel jobs (local workflow system).")
@_handle_errors
def restart(submit_dir: str, label_sets: tuple[str, ...], jobs: int | None, **values: Any) -> None:
    """Rerun only what did not succeed, optionally with other resources or retries."""
    wms = _wms_of(Path(submit_dir))
    service = _service(wms, jobs)
    overrides = _restart_overrides(values, label_sets)
    if wms == "local" and overrides and set(overrides) - {"retries"}:
        click.echo(
            "note: the local workflow system does not enforce resources; only --retries applies to it",
            err=True,
        )
    run_id = service.restart(Path(submit_dir), overrides)
    click.echo(f"restarted {submit_dir} as {run_id}")
    if wms == "local":
        _print_report(service.report(Path(submit_dir)))


@main.command()
@click.argument("submit_dir", type=click.Path(exists=True, file_okay=False))
@_handle_errors
def cancel(submit_dir: str) -> None:
    """Stop a running workflow."""
    said = _service(_wms_of(Path(submit_dir))).cancel(Path(submit_dir))
    click.echo(f"cancelled {submit_dir}" + (f": {said}" if said else ""))


@main.command()
@click.argument("submit_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--batch-size", type=click.IntRange(min=1), default=5000, show_default=True)
@click.option(
    "--dag-status",
    type=int,
    default=None,
    help="the workflow system's status of the run (DAGMan's $(DAG_STATUS)); non-zero: exit non-zero",
)
@click.option(
    "--failed-count",
    type=click.IntRange(min=0),
    default=None,
    help="jobs the workflow system counted as failed (DAGMan's $(FAILED_COUNT)); above 0: exit non-zero",
)
def finalize(submit_dir: str, batch_size: int, dag_status: int | None, failed_count: int | None) -> None:
    """Register every verified staged output of SUBMIT_DIR (the final job runs this; idempotent).

    Exits 0 only when every expected output is registered or no-work and the workflow
    system (``--dag-status`` / ``--failed-count``) saw no failure."""
    from .finalize import finalize as do_finalize

    try:
        summary = do_finalize(
            submit_dir, batch_size=batch_size, workflow_status=dag_status, failed_jobs=failed_count
        )
    except FileNotFoundError as err:
        click.echo(f"bps finalize: {err}", err=True)
        sys.exit(exit_codes.USAGE)
    except Exception as err:  # registry down or locked: a retry may succeed, unless data conflict
        conflict = type(err).__name__ == "ConflictingDatasetError"
        code = exit_codes.DATA_ERROR if conflict else exit_codes.TEMPORARY
        click.echo(
            f"bps finalize: {type(err).__name__}: {err} (exit {code}: {exit_codes.describe(code)})", err=True
        )
        sys.exit(code)
    click.echo(summary.text())
    sys.exit(summary.exit_code)


class _CampaignGroup(click.Group):
    """``bps campaign FILE`` runs the campaign (``bps campaign run FILE``); ``bps campaign report X`` reports it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@main.group(cls=_CampaignGroup)
def campaign() -> None:
    """Per-tile campaigns: ``bps campaign CAMPAIGN.yaml`` plans and submits one workflow per tile,
    each into its own RUN chained for the next; ``bps campaign report DIR_OR_YAML`` summarises them.
    See docs/campaign.md."""


@campaign.command("run")
@click.argument("campaign_file", type=click.Path(dir_okay=False))
@click.option("--max-running", type=click.IntRange(min=1), help="Tiles running at once (= max_running).")
@click.option(
    "--poll-interval", type=click.FloatRange(min=0.01), help="Seconds between looks at running tiles."
)
@_handle_errors
def campaign_run(campaign_file: str, max_running: int | None, poll_interval: float | None) -> None:
    """Plan and submit every tile of CAMPAIGN_FILE that has not finished; wait for them.

    Running it again skips the tiles that finished, restarts the failed ones and plans the rest."""
    from .campaign import CampaignDriver
    from .campaign_config import load_campaign
    from .campaign_report import summary_lines, totals

    loaded = load_campaign(campaign_file)
    driver = CampaignDriver(loaded, out=click.echo, max_running=max_running, poll_interval_s=poll_interval)
    click.echo(f"campaign {loaded.output}: directory {loaded.campaign_dir}")
    try:
        state = driver.run()
    except KeyboardInterrupt:
        click.echo(f"interrupted: `bps campaign {campaign_file}` resumes it", err=True)
        sys.exit(130)
    _, _, notes = summary_lines(state)
    for line in notes:
        click.echo(line)
    counts = totals(state)
    click.echo(f"campaign {loaded.output}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if set(counts) - {"succeeded", "empty"}:
        sys.exit(1)


@campaign.command("report")
@click.argument("target", type=click.Path(exists=True))
@_handle_errors
def campaign_report_command(target: str) -> None:
    """Every tile of a campaign: state, RUN, quanta planned and reused, jobs per label, failures.

    TARGET is the campaign directory or the campaign YAML."""
    from rich.console import Console

    from .campaign import campaign_directory
    from .campaign_report import campaign_report, summary_lines

    state, table = campaign_report(campaign_directory(target))
    console = Console(width=max(Console().width, 160))
    console.print(table)
    for line in summary_lines(state)[2]:
        console.print(line, markup=False, highlight=False)


def _wms_of(submit_dir: Path) -> str:
    from .wms.base import read_run_record
    from .workflow_io import workflow_site

    record = read_run_record(submit_dir)
    if record.get("wms"):
        return str(record["wms"])
    workflow = submit_dir / "workflow.json"
    if not workflow.exists():
        raise FileNotFoundError(f"{submit_dir} is not a submit directory (no workflow.json)")
    return workflow_site(workflow).wms  # the header alone: not the jobs of a 10^6-job workflow


def _memory_by_label(jobs: list[Any]) -> dict[str, tuple[float, float]]:
    """Label -> (largest measured peak, largest request) in MB, for labels whose jobs measured a peak.

    Side by side they show the waste (or the shortfall) of each label's request;
    ``bps prepare --resources-from`` sizes the next run's requests from the peaks.
    """
    out: dict[str, tuple[float, float]] = {}
    for job in jobs:
        if job.peak_memory_mb is None:
            continue
        peak, asked = out.get(job.label, (0.0, 0.0))
        out[job.label] = (max(peak, job.peak_memory_mb), max(asked, job.request_memory_mb or 0.0))
    return out


def _print_label_memory(console: Any, submit_dir: Path) -> None:
    """Per task label: the memory its jobs requested beside what its quanta used (`bps.usage`)."""
    from rich.table import Table

    from supertask.report.memory import COLUMNS, cells

    from .usage import label_memory

    rows = label_memory(submit_dir)
    if not rows:
        return
    table = Table(title="memory per task label: requested, and used by each quantum (its own peak)")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name == COLUMNS[0] else "right")
    for row in rows:
        table.add_row(*cells(row))
    console.print(table)


def _print_report(rep: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from supertask.states import JobState

    from .wms.base import STATES

    console = Console()
    # The heading is a line of its own, not the table's title: a title is wrapped to the
    # table's width, which breaks a long submit directory's path (and what scripts grep for)
    # across lines; a path's brackets are not markup.
    console.print(f"{rep.submit_dir} ({rep.wms}, {rep.state})", soft_wrap=True, markup=False, highlight=False)
    table = Table()
    table.add_column("label")
    shown = [
        s
        for s in STATES
        if s in (JobState.SUCCEEDED, JobState.FAILED, JobState.RUNNING, JobState.PENDING) or rep.totals()[s]
    ]
    for state in shown:
        table.add_column(state, justify="right")
    memory = _memory_by_label(rep.jobs)
    if memory:
        table.add_column("peak MB", justify="right")
        table.add_column("asked MB", justify="right")
    for label, counts in rep.counts.items():
        extra = [f"{memory[label][0]:.0f}", f"{memory[label][1]:.0f}"] if label in memory else ["", ""]
        table.add_row(label, *(str(counts[s]) for s in shown), *(extra if memory else []))
    totals = rep.totals()
    table.add_row("[bold]total", *(f"[bold]{totals[s]}" for s in shown), *(["", ""] if memory else []))
    console.print(table)
    _print_label_memory(console, Path(rep.submit_dir))
    for failure in rep.failures:
        console.print(
            f"[red]FAILED[/red] {failure.name} ({failure.label}), attempt {failure.attempt}: {failure.reason}"
            + (f"\n  log: {failure.log_file}" if failure.log_file else "")
        )
        if failure.log_tail:
            console.print(failure.log_tail, markup=False, highlight=False)
    for message in rep.messages:
        console.print(message)


if __name__ == "__main__":
    main()
