"""The errors of the data-ID expression language.

Every problem with a user's expression raises a subclass of `ExpressionError`, itself a
`ValueError`, so callers (the registry, the CLI) need one ``except`` clause and never see a
lark or SQLAlchemy exception. Each error carries the position of the problem in the
expression text (a `Span`) and renders the expression with a caret under it, because an
operator reading a failed submission log needs to see *where* and *what to write instead*.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_MAX_SHOWN = 160
"""Longest part of a line shown under an error; longer lines show a window around the caret."""

__all__ = [
    "ExpressionError",
    "ExpressionSyntaxError",
    "ExpressionTypeError",
    "ExpressionValueError",
    "MissingBindError",
    "Span",
    "UnknownIdentifierError",
]


@dataclass(frozen=True)
class Span:
    """Where a piece of an expression sits in the text it was parsed from.

    Parameters
    ----------
    source : `str`
        The whole expression text (shared by all spans of one parse, so it costs nothing).
    start, end : `int`
        Character offsets of the piece, ``end`` exclusive.
    """

    source: str
    start: int
    end: int

    def _render_line(self, line_number: int | None) -> str:
        """Render a one-line source (a window cut from a long line) with the given line number."""
        width = max(1, self.end - self.start)
        pad = "".join("\t" if ch == "\t" else " " for ch in self.source[: self.start])
        prefix = f"line {line_number}: " if line_number is not None else ""
        return f"    {prefix}{self.source}\n    {' ' * len(prefix)}{pad}^{'~' * (width - 1)}"

    def render(self) -> str:
        """Return the source line holding the span with a caret line under it.

        Only the line holding ``start`` is shown (with its number when the expression has
        several lines) so that a multi-line expression from a YAML file still gives a short,
        readable message.
        """
        start = max(0, min(self.start, len(self.source)))
        line_start = self.source.rfind("\n", 0, start) + 1
        line_end = self.source.find("\n", start)
        if line_end < 0:
            line_end = len(self.source)
        if line_end - line_start > _MAX_SHOWN:
            # A very long line (a generated IN list) is shown as a window around the problem.
            window_start = max(line_start, start - _MAX_SHOWN // 2)
            window_end = min(line_end, window_start + _MAX_SHOWN)
            lead = "..." if window_start > line_start else ""
            tail = "..." if window_end < line_end else ""
            shown = lead + self.source[window_start:window_end] + tail
            offset = len(lead) - window_start  # source position -> position in ``shown``
            end = min(self.end, window_end) + offset
            return Span(shown, start + offset, end)._render_line(
                self.source.count(chr(10), 0, start) + 1 if "\n" in self.source else None
            )
        line = self.source[line_start:line_end]
        width = max(1, min(self.end, line_end) - start)
        # Tabs keep their width under the caret so it stays aligned.
        pad = "".join("\t" if ch == "\t" else " " for ch in line[: start - line_start])
        prefix = f"line {self.source.count(chr(10), 0, start) + 1}: " if "\n" in self.source else ""
        return f"    {prefix}{line}\n    {' ' * len(prefix)}{pad}^{'~' * (width - 1)}"


class ExpressionError(ValueError):
    """A data-ID expression is invalid: the base class of every error of this package.

    Parameters
    ----------
    message : `str`
        What is wrong, in one sentence.
    span : `Span`, optional
        Where it is; the rendered error shows the expression with a caret under it.
    hint : `str`, optional
        What to write instead.
    """

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint

    def with_span(self, span: Span | None) -> ExpressionError:
        """Return this error located at ``span`` (if it has no position yet).

        Resolvers raise `UnknownIdentifierError` without knowing where the identifier is;
        the compiler adds the position before re-raising.
        """
        if self.span is None and span is not None:
            self.span = span
        return self

    def __str__(self) -> str:
        parts = [self.message]
        if self.span is not None:
            parts.append(self.span.render())
        if self.hint:
            parts.append(self.hint)
        return "\n".join(parts)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep errors picklable (they cross process boundaries in the executor) even though
        # subclasses take different constructor arguments.
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[ExpressionError], args: tuple[Any, ...], state: dict[str, Any]) -> ExpressionError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ExpressionSyntaxError(ExpressionError):
    """The text does not follow the grammar (or nests deeper than allowed)."""


class ExpressionValueError(ExpressionError):
    """A literal, range or bind value is unusable (out of range, empty range, NUL byte...)."""


class ExpressionTypeError(ExpressionError):
    """A value's type does not match the column it is compared with (``band = 3``)."""


class MissingBindError(ExpressionError):
    """A ``:name`` bind parameter has no value in the ``bind`` mapping.

    Parameters
    ----------
    name : `str`
        The bind parameter's name (without the colon).
    provided : iterable of `str`
        The names that were given, listed in the message.
    span : `Span`, optional
        Where the parameter is used.
    """

    def __init__(self, name: str, provided: Iterable[str] = (), span: Span | None = None):
        self.name = name
        self.provided = sorted(provided)
        given = ", ".join(self.provided) if self.provided else "none"
        super().__init__(
            f"No value for bind parameter :{name} (values given for: {given}).",
            span,
            f"Pass it in the bind mapping, e.g. bind={{{name!r}: ...}}.",
        )


class UnknownIdentifierError(ExpressionError):
    """An identifier names no unit or unit field of the repository.

    Parameters
    ----------
    identifier : `str`
        The identifier as written (``unit`` or ``unit.field``).
    valid : iterable of `str`
        The identifiers that exist; listed in the message, and the closest one is suggested.
    span : `Span`, optional
        Where the identifier is.
    """

    def __init__(self, identifier: str, valid: Iterable[str] = (), span: Span | None = None):
        self.identifier = identifier
        self.valid = sorted(set(valid))
        close = difflib.get_close_matches(identifier, self.valid, n=1, cutoff=0.6)
        if not close:
            lowered = {name.lower(): name for name in self.valid}
            close = [lowered[identifier.lower()]] if identifier.lower() in lowered else []
        self.suggestion: str | None = close[0] if close else None
        hint_parts = []
        if self.suggestion is not None:
            hint_parts.append(f"Did you mean {self.suggestion!r}?")
        hint_parts.append("Valid identifiers: " + (", ".join(self.valid) if self.valid else "(none)") + ".")
        super().__init__(f"Unknown identifier {identifier!r}.", span, " ".join(hint_parts))
