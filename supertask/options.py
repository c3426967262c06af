"""What to plan and how to run it: the two option objects of a request, validated in one place.

`PlanRequest` says what to plan (the expression, its bind values, the input collections,
the output RUN, what to do with outputs registered already, the size limit);
`RunOptions` says how to run a planned graph (worker processes, timeout, fail-fast,
progress). Both carry the output policy (``skip_existing``, ``skip_existing_in``,
``extend_run``, ``clobber_outputs``): planning and the run check registered outputs with
the same answer (a saved graph may be run long after it was planned).

The command line (``supertask qgraph`` / ``supertask run``), ``bps prepare`` and the
Python functions (`build_quantum_graph`, `run_graph`, `run_pipeline`) build these
objects and pass them through, so an option is named, defaulted and checked once. The
Python functions still take the fields as keyword arguments, as a convenience that
builds the object (`from_keywords`, `split_keywords`).

The module imports nothing heavy: ``import supertask`` exports both names lazily.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .execution.existing_outputs import OutputPolicy

__all__ = [
    "DEFAULT_MAX_ROWS",
    "OptionsError",
    "PlanRequest",
    "RunOptions",
    "from_keywords",
    "policy_keywords",
    "split_keywords",
]

#: Refuse a request whose planning query returns more rows than this, unless overridden.
DEFAULT_MAX_ROWS = 2_000_000

_Options = TypeVar("_Options", "PlanRequest", "RunOptions")


class OptionsError(ValueError):
    """An option's value, or a combination of options, that cannot be honoured.

    ``option`` names the field (the command line maps it to its flag); the message says
    what is wrong and what to give instead.
    """

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


def _collections(option: str, value: Iterable[str] | None) -> tuple[str, ...]:
    """A tuple of collection names; one string is refused (it would be read letter by letter)."""
    if value is None:
        return ()
    if isinstance(value, str):
        raise OptionsError(
            option, f"expected a list of collection names, got the string {value!r}: use [{value!r}]"
        )
    names = tuple(value)
    bad = [name for name in names if not isinstance(name, str) or not name]
    if bad:
        raise OptionsError(option, f"collection names must be non-empty strings, got {bad[0]!r}")
    return names


def _validate_policy(options: OutputPolicy) -> None:
    """Normalise and check the output-policy fields shared by both objects (frozen: set through object)."""
    object.__setattr__(
        options, "skip_existing_in", _collections("skip_existing_in", options.skip_existing_in)
    )
    for name in ("skip_existing", "extend_run", "clobber_outputs"):
        if not isinstance(getattr(options, name), bool):
            raise OptionsError(name, f"expected True or False, got {getattr(options, name)!r}")


@dataclass(frozen=True, kw_only=True)
class PlanRequest(OutputPolicy):
    """What to plan: one preflight request (`build_quantum_graph`).

    Parameters
    ----------
    output_run : `str`
        The RUN collection the graph writes to (required).
    where : `str`, optional
        The data-ID expression; ``None`` (or blank) selects everything the inputs allow.
    bind : mapping, optional
        Values of the ``:NAME`` placeholders in ``where`` (given without ``where``: refused).
    input_collections : sequence of `str`
        Collections searched for the overall inputs, in order (default: the Butler's).
    skip_existing, skip_existing_in, extend_run, clobber_outputs
        What to do with outputs registered already (see `OutputPolicy`).
    max_rows : `int` or `None`
        Refuse a planning query larger than this; ``None`` or ``0``: no limit.
    expand_inputs : `bool`
        Gathering tasks receive every related input regardless of the expression
        (``False``: the expression slices gathered inputs too).
    command_line : `str`
        The command that made the request, recorded with the graph (provenance).
    allow_empty : `bool`
        Return an empty graph instead of raising `EmptyGraphError`.

    Raises
    ------
    OptionsError
        A value or a combination that cannot be honoured, naming the option.
    """

    output_run: str
    where: str | None = None
    bind: Mapping[str, Any] = field(default_factory=dict)
    input_collections: tuple[str, ...] = ()
    max_rows: int | None = DEFAULT_MAX_ROWS
    expand_inputs: bool = True
    command_line: str = ""
    allow_empty: bool = False

    def __post_init__(self) -> None:
        _validate_policy(self)
        if not isinstance(self.output_run, str) or not self.output_run.strip():
            raise OptionsError(
                "output_run", "an output RUN collection is required: name the RUN the outputs go to"
            )
        if self.where is not None and not isinstance(self.where, str):
            raise OptionsError("where", f"expected an expression string, got {self.where!r}")
        object.__setattr__(self, "where", self.where if self.where and self.where.strip() else None)
        if not isinstance(self.bind, Mapping):
            raise OptionsError("bind", f"expected a mapping of NAME to value, got {self.bind!r}")
        object.__setattr__(self, "bind", dict(self.bind))
        if self.bind and self.where is None:
            raise OptionsError(
                "bind",
                f"bind values for {sorted(self.bind)} are given without an expression: they fill "
                "the :NAME placeholders of the expression (where); give the expression or drop them",
            )
        object.__setattr__(
            self, "input_collections", _collections("input_collections", self.input_collections)
        )
        if self.max_rows is not None and (
            isinstance(self.max_rows, bool) or not isinstance(self.max_rows, int) or self.max_rows < 0
        ):
            raise OptionsError(
                "max_rows", f"expected a row count of 0 or more (0: no limit), got {self.max_rows!r}"
            )
        if self.max_rows == 0:
            object.__setattr__(self, "max_rows", None)

    @property
    def policy(self) -> OutputPolicy:
        """The output policy alone (what the existing-outputs check needs)."""
        return _policy_of(self)


@dataclass(frozen=True, kw_only=True)
class RunOptions(OutputPolicy):
    """How to run a planned graph on this machine (`run_graph`).

    Parameters
    ----------
    processes : `int`
        Worker processes (at least 1).
    timeout : `float`, optional
        Seconds a quantum may run before its worker is killed (more than 0).
    fail_fast : `bool`
        Stop at the first failure instead of running everything that does not depend on it.
    skip_existing, skip_existing_in, extend_run, clobber_outputs
        What to do with outputs registered already (see `OutputPolicy`).
    command_line : `str`
        The command that started the run, recorded with the RUN (default: the graph's).
    progress : callable, optional
        Called with the tally (done, failed, running, remaining) after each change;
        not part of the options' equality.

    Raises
    ------
    OptionsError
        A value that cannot be honoured, naming the option.
    """

    processes: int = 1
    timeout: float | None = None
    fail_fast: bool = False
    command_line: str = ""
    progress: Callable[[dict[str, int]], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _validate_policy(self)
        if isinstance(self.processes, bool) or not isinstance(self.processes, int) or self.processes < 1:
            raise OptionsError("processes", f"must be at least 1, got {self.processes!r}")
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, (int, float))
            or not self.timeout > 0
        ):
            raise OptionsError(
                "timeout", f"must be a number of seconds above 0 (or None: no limit), got {self.timeout!r}"
            )
        if not isinstance(self.fail_fast, bool):
            raise OptionsError("fail_fast", f"expected True or False, got {self.fail_fast!r}")

    @property
    def policy(self) -> OutputPolicy:
        """The output policy alone (what the existing-outputs check needs)."""
        return _policy_of(self)


_POLICY_FIELDS = tuple(f.name for f in dataclasses.fields(OutputPolicy))


def policy_keywords(options: OutputPolicy) -> dict[str, Any]:
    """The output-policy fields of ``options``, as keyword arguments (of the other object)."""
    return {name: getattr(options, name) for name in _POLICY_FIELDS}


def _policy_of(options: OutputPolicy) -> OutputPolicy:
    return OutputPolicy(**policy_keywords(options))


def _names(cls: type[PlanRequest] | type[RunOptions]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _unknown(caller: str, name: str, known: Iterable[str]) -> TypeError:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return TypeError(
        f"{caller}() got an unknown option {name!r}{hint}; the options are {', '.join(sorted(known))}"
    )


def from_keywords(
    cls: type[_Options], given: _Options | None, keywords: Mapping[str, Any], caller: str
) -> _Options:
    """The options object a function was given, or the one its keyword arguments describe.

    Raises
    ------
    TypeError
        Both an object and keyword arguments, or a keyword that is no field of ``cls``.
    OptionsError
        From the object's validation.
    """
    if given is not None:
        if keywords:
            raise TypeError(
                f"{caller}() got a {cls.__name__} and the keyword options {sorted(keywords)}: "
                f"give one of the two (dataclasses.replace(options, ...) changes a field)"
            )
        if not isinstance(given, cls):
            raise TypeError(f"{caller}() expected a {cls.__name__}, got {type(given).__name__}")
        return given
    known = _names(cls)
    for name in keywords:
        if name not in known:
            raise _unknown(caller, name, known)
    if cls is PlanRequest and "output_run" not in keywords:
        raise OptionsError("output_run", "an output RUN collection is required: output_run=RUN")
    return cls(**keywords)


def split_keywords(
    keywords: Mapping[str, Any], caller: str, *, command_line: str = ""
) -> tuple[PlanRequest, RunOptions]:
    """A `PlanRequest` and `RunOptions` from one set of keyword arguments (`run_pipeline`).

    The output-policy keywords go to both; every other keyword to the one object that
    has it; ``command_line`` (when not given) to both.
    """
    plan_names, run_names = set(_names(PlanRequest)), set(_names(RunOptions))
    for name in keywords:
        if name not in plan_names | run_names:
            raise _unknown(caller, name, plan_names | run_names)
    plan = {k: v for k, v in keywords.items() if k in plan_names}
    run = {k: v for k, v in keywords.items() if k in run_names}
    for part in (plan, run):
        part.setdefault("command_line", command_line)
    return from_keywords(PlanRequest, None, plan, caller), from_keywords(RunOptions, None, run, caller)
