"""The options of a preflight request, shared by ``supertask qgraph`` and ``supertask run``."""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click


def request_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a click command with the pipeline / collections / expression options."""
    options = [
        click.option(
            "-p",
            "--pipeline",
            "pipeline_file",
            metavar="FILE[#NAME]",
            help="Pipeline YAML file; FILE#NAME plans only the subset or step NAME (or labels a,b).",
        ),
        click.option(
            "--subset",
            default=None,
            metavar="NAME",
            help="Plan only this subset or step of the pipeline (the same as FILE#NAME).",
        ),
        click.option(
            "-i",
            "--input",
            "inputs",
            multiple=True,
            metavar="COLL",
            help="Input collection to search, in order (repeatable; comma-separated allowed).",
        ),
        click.option(
            "-o",
            "--output",
            "output_run",
            metavar="RUN",
            help="Output RUN collection (supertask run --qgraph FILE -o RUN: the saved graph retargeted to RUN).",
        ),
        click.option(
            "-d",
            "--where",
            default=None,
            metavar="EXPR",
            help="Data-ID expression, e.g. \"tract = 0 AND band IN ('g', 'r')\".",
        ),
        click.option(
            "--bind", multiple=True, metavar="NAME=VALUE", help="Value of a :NAME in the expression."
        ),
        click.option(
            "-c",
            "--config",
            "config_overrides",
            multiple=True,
            metavar="LABEL:FIELD=VALUE",
            help="Config override for one task (repeatable).",
        ),
        click.option(
            "--instrument", default=None, help="Apply the pipeline's overrides for this instrument."
        ),
        click.option(
            "--skip-existing",
            is_flag=True,
            help="Leave out quanta whose outputs all exist in the output run already "
            "(= --skip-existing-in OUTPUT_RUN).",
        ),
        click.option(
            "--skip-existing-in",
            "skip_existing_in",
            multiple=True,
            metavar="COLL",
            help="Leave out quanta whose outputs all exist in these collections; their consumers "
            "read them there (repeatable; comma-separated allowed).",
        ),
        click.option(
            "--extend-run",
            is_flag=True,
            help="Add to an output RUN that exists already (same pipeline and configs only), "
            "leaving out quanta whose outputs all exist there.",
        ),
        click.option(
            "--clobber-outputs",
            is_flag=True,
            help="Unregister outputs already in the output RUN that are in the way of a quantum "
            "that runs (e.g. the partial outputs of a failed one), so it can write them anew. "
            "Registered files are never replaced without it.",
        ),
        click.option(
            "--max-rows",
            type=int,
            default=None,
            help="Refuse a planning query larger than this (0: no limit).",
        ),
        click.option(
            "--restrict-inputs",
            is_flag=True,
            help="Let the expression restrict the inputs gathered by a quantum too "
            "(default: gathered inputs are never sliced by the expression).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def parse_bind(values: tuple[str, ...]) -> dict[str, Any]:
    """``("v=3", "b=g")`` -> ``{"v": 3, "b": "g"}`` (integers and floats are converted)."""
    result: dict[str, Any] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--bind")
        value: Any = raw
        for convert in (int, float):
            try:
                value = convert(raw)
                break
            except ValueError:
                continue
        result[name.strip()] = value
    return result


def split_collections(values: tuple[str, ...]) -> list[str]:
    """Accept both repeated options and comma-separated lists."""
    return [c.strip() for v in values for c in v.split(",") if c.strip()]


def load_pipeline(
    pipeline_file: str, config_overrides: tuple[str, ...], instrument: str | None, subset: str | None = None
) -> Any:
    """Read a pipeline file (``FILE#NAME`` or ``subset``: only that part) and apply ``label:field=value`` overrides.

    Overrides are applied to the whole pipeline first, then the part is selected, so an
    override names a label as the pipeline file does whichever part is run.
    """
    from ..pipeline import Pipeline
    from ..pipeline.steps import select, split_pipeline_spec

    path, selected = split_pipeline_spec(pipeline_file)
    if selected is not None and subset is not None and selected != subset:
        raise click.UsageError(
            f"-p {pipeline_file} selects {selected!r} but --subset says {subset!r}: give one of the two"
        )
    selected = selected if selected is not None else subset
    pipeline = Pipeline.fromFile(path)
    if instrument:
        pipeline = pipeline.forInstrument(instrument)
    if config_overrides:
        overrides: dict[str, list[str]] = {}
        for item in config_overrides:
            label, sep, rest = item.partition(":")
            if not sep:
                raise click.BadParameter(f"{item!r}: expected LABEL:FIELD=VALUE", param_hint="--config")
            overrides.setdefault(label, []).append(rest)
        pipeline.applyConfigOverrides(overrides)
    if selected is not None:
        pipeline = select(pipeline, selected)
        pipeline.validate()
    return pipeline


def command_line() -> str:
    """The command line as typed (for provenance)."""
    return " ".join(shlex.quote(a) for a in sys.argv)


def guarded(
    expected: Callable[[], tuple[type[BaseException], ...]], on_expected: Callable[[BaseException], NoReturn]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command so that no error reaches the user as a traceback.

    ``expected()`` (called when the command runs, so its imports stay lazy) names the
    errors of bad input, which ``on_expected`` reports; click's own errors pass through;
    anything else is reported as one line by `report_unexpected` (exit code 1).
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            caught = expected()
            try:
                return func(*args, **kwargs)
            except caught as err:
                on_expected(err)
            except click.ClickException:
                raise
            except Exception as err:  # noqa: BLE001 - the last line of defence: never a traceback
                report_unexpected(err)
                sys.exit(1)

        return wrapper

    return decorate


def _planning_errors() -> tuple[type[BaseException], ...]:
    """The errors of a planning or running request that a user's input causes."""
    from ..graph.builder import GraphBuilderError

    expected: tuple[type[BaseException], ...] = (GraphBuilderError, FileNotFoundError)
    for module, name in (
        ("supertask.expr", "ExpressionError"),
        ("supertask.pipeline", "PipelineError"),
        ("supertask.config", "FieldValidationError"),
        ("supertask.graph.file_format", "GraphFileError"),
        ("supertask.repo.registry", "RegistryError"),
        ("supertask.schemas", "SchemaError"),
    ):
        try:
            expected += (getattr(__import__(module, fromlist=[name]), name),)
        except (ImportError, AttributeError):
            pass
    return expected


def _print_error(err: BaseException) -> NoReturn:
    click.secho(f"error: {err}", fg="red", err=True)
    sys.exit(1)


#: Turn the project's expected errors into clean messages and exit code 1 (no traceback).
handle_errors = guarded(_planning_errors, _print_error)


def report_unexpected(err: BaseException) -> None:
    """Print an unexpected error as one line (the traceback goes to the log at DEBUG level).

    Every input a user can get wrong has its own message; this is for what is left, so
    that even then the user sees what failed and how to get the details, not 60 lines.
    """
    import logging
    import traceback

    logging.getLogger("supertask.cli").debug("".join(traceback.format_exception(err)))
    message = str(err).splitlines()[0] if str(err) else ""
    click.secho(
        f"error: {type(err).__name__}: {message[:300]} (unexpected; rerun with --log-level DEBUG "
        "for the traceback and report it)",
        fg="red",
        err=True,
    )


#: the command-line flag of each option field (for messages about a bad value)
FLAGS = {
    "output_run": "-o/--output",
    "where": "-d/--where",
    "bind": "--bind",
    "input_collections": "-i/--input",
    "skip_existing": "--skip-existing",
    "skip_existing_in": "--skip-existing-in",
    "extend_run": "--extend-run",
    "clobber_outputs": "--clobber-outputs",
    "max_rows": "--max-rows",
    "processes": "-j/--processes",
    "timeout": "--timeout",
    "fail_fast": "--fail-fast",
}

#: the options of `request_options` that only planning uses (meaningless for a saved graph)
PLANNING_ONLY = {
    "subset": "--subset",
    "where": "-d/--where",
    "bind": "--bind",
    "config_overrides": "-c/--config",
    "instrument": "--instrument",
    "max_rows": "--max-rows",
    "restrict_inputs": "--restrict-inputs",
}


def _checked(build: Callable[[], Any]) -> Any:
    """Build an options object; a value it refuses becomes click's usage error naming the flag."""
    from ..options import OptionsError

    try:
        return build()
    except OptionsError as err:
        raise click.BadParameter(err.message, param_hint=FLAGS.get(err.option, err.option)) from None


def output_policy(params: dict[str, Any]) -> dict[str, Any]:
    """The output-policy options (``--skip-existing`` ... ``--clobber-outputs``) as keyword arguments."""
    return {
        "skip_existing": params["skip_existing"],
        "skip_existing_in": tuple(split_collections(params["skip_existing_in"])),
        "extend_run": params["extend_run"],
        "clobber_outputs": params["clobber_outputs"],
    }


def plan_options(output_run: str | None, inputs: tuple[str, ...], params: dict[str, Any]) -> Any:
    """The `PlanRequest` of a command line: the one place its flags become the request.

    ``params`` are the values of `request_options` as click passes them.
    """
    from ..options import DEFAULT_MAX_ROWS, PlanRequest

    max_rows = params["max_rows"]
    return _checked(
        lambda: PlanRequest(
            output_run=output_run or "",
            where=params["where"],
            bind=parse_bind(params["bind"]),
            input_collections=tuple(split_collections(inputs)),
            max_rows=DEFAULT_MAX_ROWS if max_rows is None else max_rows,
            expand_inputs=not params["restrict_inputs"],
            command_line=command_line(),
            **output_policy(params),
        )
    )


def run_options(params: dict[str, Any], **how: Any) -> Any:
    """The `RunOptions` of a command line: ``how`` (processes, timeout, fail_fast, progress) and the output policy."""
    from ..options import RunOptions

    return _checked(lambda: RunOptions(command_line=command_line(), **how, **output_policy(params)))


def planning_options_given(params: dict[str, Any]) -> list[str]:
    """The planning-only flags given on the command line (refused with a saved graph)."""
    return [flag for name, flag in PLANNING_ONLY.items() if params.get(name)]


def plan_request(
    repo: str,
    request: Any,
    params: dict[str, Any],
    *,
    pipeline_file: str,
    console: Any,
    writeable: bool | None = None,
) -> tuple[Any, Any]:
    """Open the repository and plan ``request``; print what preflight found. Returns ``(butler, graph)``.

    ``params`` (the values of `request_options`) say which pipeline: config overrides,
    instrument, subset. ``writeable=False`` opens the repository read-only (planning
    alone never writes to it); the default leaves the Butler free to write, as
    ``supertask run`` needs.
    """
    from ..graph.builder import build_quantum_graph
    from ..repo.butler import Butler

    pipeline = load_pipeline(
        pipeline_file, params["config_overrides"], params["instrument"], params["subset"]
    )
    butler = Butler(repo, collections=list(request.input_collections) or None, writeable=writeable)
    with console.status("planning..."):
        graph, report = build_quantum_graph(pipeline, butler, request)
    for line in report.lines():
        console.print(line)
    return butler, graph
