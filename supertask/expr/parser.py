"""Parsing expression text into the syntax tree of `supertask.expr.nodes`.

The lark LALR parser is built once, on first use, and cached: importing this package
stays cheap (batch jobs never parse expressions) and repeated parses do not pay for
building the parse tables again.
"""

from __future__ import annotations

import functools
import math
import re
from typing import TYPE_CHECKING, Any

from .errors import ExpressionError, ExpressionSyntaxError, ExpressionValueError, Span
from .grammar import GRAMMAR, TERMINAL_DESCRIPTIONS
from .nodes import And, BindParam, Comparison, Identifier, InList, Literal, Node, Not, Or, Range

if TYPE_CHECKING:
    from lark import Lark, Token, Tree

__all__ = ["MAX_DEPTH", "parse_expression"]

MAX_DEPTH = 64
"""Deepest nesting of parentheses and NOTs accepted.

Later passes over the tree are recursive; a bound keeps a hostile or generated
expression from exhausting the interpreter stack (which would not be an `ExpressionError`).
"""

MAX_LENGTH = 20_000_000
"""Longest expression text accepted (characters): enough for an IN list of a million values."""

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_MAX_NUMBER_CHARS = 40  # longer digit strings cannot be 64-bit integers; avoids int() limits

# -- the fast path for long literal IN lists ------------------------------------------------
# lark spends ~100 us per token; a 50,000-value IN list took seconds. A long list whose
# items are all plain literals, ranges or binds is read here with one regular expression
# (the grammar's own terminals) and replaced, for lark, by a bind-shaped placeholder of the
# same length, so every position in the text - and every error's caret - stays the same.
_FAST_LIST_MIN_ITEMS = 32
_WS = r"[ \t\r\n]*"
_INT = r"[+-]?[0-9]+"
_FLOAT = r"[+-]?(?:[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)"
_STRING = r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\""
_ITEM = (
    rf"(?P<range>(?P<start>{_INT}){_WS}\.\.{_WS}(?P<stop>{_INT})(?:{_WS}:{_WS}(?P<stride>{_INT}))?)"
    rf"|(?P<float>{_FLOAT})|(?P<int>{_INT})|(?P<string>{_STRING})|(?P<bind>:[A-Za-z_][A-Za-z0-9_]*)"
)
_ITEM_RE = re.compile(rf"{_WS}(?:{_ITEM}){_WS}(?P<sep>,|\))")
_LIST_START_RE = re.compile(rf"{_STRING}|\b(?:IN|in|In|iN){_WS}\(")
_PLACEHOLDER = "__supertask_list_"


@functools.cache
def _parser() -> Lark:
    """Build the LALR parser (once per process)."""
    from lark import Lark

    return Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def parse_expression(text: str, *, fast_lists: bool = True) -> Node:
    """Parse a data-ID expression.

    Parameters
    ----------
    text : `str`
        The expression, e.g. ``"instrument = 'DemoCam' AND visit IN (100..120)"``.
    fast_lists : `bool`
        Read long IN lists of plain values without lark (same tree, ~20x faster);
        `False` parses everything with lark (tests compare the two).

    Returns
    -------
    tree : `Node`
        The syntax tree; nodes remember their position in ``text`` for later error messages.

    Raises
    ------
    ExpressionSyntaxError
        If the text does not follow the grammar; the message shows where and what was expected.
    ExpressionValueError
        If a literal is unusable (an integer outside 64 bits, an empty range, a zero stride).
    """
    if not isinstance(text, str):
        raise TypeError(f"A data-ID expression must be a str, not {type(text).__name__}.")
    if not text.strip():
        raise ExpressionSyntaxError(
            "The data-ID expression is empty.", None, "Pass no expression (None) to select everything."
        )
    if len(text) > MAX_LENGTH:
        raise ExpressionSyntaxError(
            f"The data-ID expression is {len(text)} characters long; the limit is {MAX_LENGTH}.",
            None,
            "Pass long lists of values as a :bind list, or use ranges (start..stop:stride).",
        )
    from lark.exceptions import UnexpectedInput, VisitError

    masked, lists = _mask_long_lists(text) if fast_lists else (text, {})
    try:
        lark_tree = _parser().parse(masked)
    except UnexpectedInput as error:
        raise _syntax_error(text, error) from None
    _check_depth(text, lark_tree)
    try:
        tree: Node = _builder_class()(text, lists).transform(lark_tree)
        return tree
    except VisitError as error:
        if isinstance(error.orig_exc, ExpressionError):
            raise error.orig_exc from None
        raise


def _mask_long_lists(text: str, min_items: int = _FAST_LIST_MIN_ITEMS) -> tuple[str, dict[str, list[Any]]]:
    """Replace long literal IN lists by same-length placeholders; return the text and the lists.

    Each list maps the placeholder's bind name to the regular-expression matches of its
    items (turned into nodes by the tree builder, with the same checks as lark's items).
    Anything unusual - a list that does not match item by item, text already holding
    the placeholder name - is left to lark, which then reports the error as usual.
    """
    if _PLACEHOLDER in text or text.count(",") < min_items:
        return text, {}
    pieces: list[str] = []
    lists: dict[str, list[Any]] = {}
    done = 0
    position = 0
    while (found := _LIST_START_RE.search(text, position)) is not None:
        position = found.end()
        if found.group().startswith(("'", '"')):
            continue  # a string: an IN inside it is text
        items = []
        cursor = position
        while (item := _ITEM_RE.match(text, cursor)) is not None:
            items.append(item)
            cursor = item.end()
            if item.group("sep") == ")":
                break
        if not items or items[-1].group("sep") != ")" or len(items) < min_items:
            continue
        name = f"{_PLACEHOLDER}{len(lists)}"
        end = cursor - 1  # the closing parenthesis stays
        width = end - position
        if width < len(name) + 1:
            continue
        pieces.append(text[done:position])
        pieces.append(":" + name + " " * (width - len(name) - 1))
        lists[name] = items
        done = position = end
    if not lists:
        return text, {}
    pieces.append(text[done:])
    return "".join(pieces), lists


def _syntax_error(text: str, error: Any) -> ExpressionSyntaxError:
    """Translate a lark error into one that names the problem in the user's terms."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedToken

    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        token = error.token
        start = token.start_pos if token.start_pos is not None else len(text)
        end = start + max(1, len(str(token)))
        found = repr(str(token))
    elif isinstance(error, UnexpectedCharacters):
        start = error.pos_in_stream if error.pos_in_stream is not None else len(text)
        end = start + 1
        found = f"character {text[start]!r}" if start < len(text) else "end of expression"
    else:  # the end of the text came too early
        start = end = len(text)
        found = "end of expression"
    fallback = getattr(error, "expected", None) or getattr(error, "allowed", None) or ()
    expected = _describe(_accepted_before(text, start) or fallback)
    message = f"Syntax error in data-ID expression: unexpected {found}"
    message += f"; expected {expected}." if expected else "."
    hint = None
    if found in ("character ';'", "character '-'", "character '/'", "character '#'"):
        hint = "Statements and comments are not part of the language: write one condition."
    elif found in ("character '\"'", 'character "\'"'):
        hint = "A string must end with the quote it starts with; double a quote to include it ('it''s')."
    elif found == "'='" and text[start - 1 : start + 1] == "==":
        hint = "Equality is a single '='."
    return ExpressionSyntaxError(message, Span(text, start, end), hint)


def _accepted_before(text: str, position: int) -> set[str]:
    """Return the terminals the grammar accepts after ``text[:position]``.

    Lark's own error reports what is acceptable *after* the parser applied default
    reductions, which is often just "end of input"; re-running the valid prefix gives the
    full list (AND, OR, ...) that a user needs to fix the expression.
    """
    try:
        interactive = _parser().parse_interactive(text[:position])
        interactive.exhaust_lexer()
        return set(interactive.accepts())
    except Exception:  # noqa: BLE001 - only used to improve a message; fall back to lark's list
        return set()


def _describe(terminals: Any) -> str:
    names: set[str] = {TERMINAL_DESCRIPTIONS.get(name, name) for name in terminals}
    if "a number" in names:
        names.discard("an integer")
    ordered = sorted(names, key=lambda name: (name.startswith(("a ", "an ", "the ")), name))
    if len(ordered) <= 1:
        return "".join(ordered)
    return ", ".join(ordered[:-1]) + " or " + ordered[-1]


def _check_depth(text: str, tree: Tree[Any]) -> None:
    """Reject trees nested deeper than `MAX_DEPTH`, without recursion."""
    from lark import Tree

    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            meta = node.meta
            start = getattr(meta, "start_pos", 0)
            raise ExpressionSyntaxError(
                f"The data-ID expression nests more than {MAX_DEPTH} levels deep.",
                Span(text, start, start + 1),
                "Simplify it: use IN lists and ranges instead of deeply nested conditions.",
            )
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


def _check_int(source: str, raw: str, start: int) -> int:
    if len(raw) > _MAX_NUMBER_CHARS or not _INT64_MIN <= int(raw) <= _INT64_MAX:
        raise ExpressionValueError(
            f"Integer {raw[:_MAX_NUMBER_CHARS]} is outside the 64-bit range.",
            Span(source, start, start + len(raw)),
            "Unit keys and fields are 64-bit integers at most.",
        )
    return int(raw)


def _make_range(start: int, stop: int, stride: int, span: Span | None) -> Range:
    if stop < start:
        raise ExpressionValueError(
            f"The range {start}..{stop} is empty.",
            span,
            f"Ranges include both ends and go upwards: write {stop}..{start}.",
        )
    if stride < 1:
        raise ExpressionValueError(
            f"The stride of {start}..{stop}:{stride} must be a positive integer.", span
        )
    return Range(start, stop, stride, span=span)


def _make_float(raw: str, span: Span | None) -> Literal:
    value = float(raw)
    if not math.isfinite(value):
        raise ExpressionValueError(f"Number {raw} is too large.", span)
    return Literal(value, span=span)


def _fast_items(source: str, matches: list[Any]) -> list[Node]:
    """The nodes of a list read by `_mask_long_lists`: the values, spans and checks lark's items get."""
    nodes: list[Node] = []
    for m in matches:
        if (raw := m.group("int")) is not None:
            begin = m.start("int")
            nodes.append(Literal(_check_int(source, raw, begin), span=Span(source, begin, m.end("int"))))
        elif m.group("range") is not None:
            start = _check_int(source, m.group("start"), m.start("start"))
            stop = _check_int(source, m.group("stop"), m.start("stop"))
            stride = (
                1 if m.group("stride") is None else _check_int(source, m.group("stride"), m.start("stride"))
            )
            nodes.append(_make_range(start, stop, stride, Span(source, *m.span("range"))))
        elif (raw := m.group("float")) is not None:
            nodes.append(_make_float(raw, Span(source, *m.span("float"))))
        elif (raw := m.group("string")) is not None:
            nodes.append(Literal(raw[1:-1].replace(raw[0] * 2, raw[0]), span=Span(source, *m.span("string"))))
        else:
            nodes.append(BindParam(m.group("bind")[1:], span=Span(source, *m.span("bind"))))
    return nodes


class _Spliced:
    """The items of a fast-path list, standing where lark saw its placeholder."""

    def __init__(self, nodes: list[Node]):
        self.nodes = nodes


@functools.cache
def _builder_class() -> type:
    """Return the lark `Transformer` that builds `Node` objects (class made once, lazily).

    Building it on first use keeps lark out of ``import supertask.expr``; caching it
    matters because lark's ``v_args`` inspects the class, which costs more than a parse.
    """
    from lark import Transformer, v_args

    @v_args(meta=True)
    class Builder(Transformer[Any, Node]):
        def __init__(self, source: str, lists: dict[str, list[Any]] | None = None):
            super().__init__()
            self.source = source
            self.lists = lists or {}

        def span_of(self, meta: Any) -> Span | None:
            if getattr(meta, "empty", True):
                return None
            return Span(self.source, meta.start_pos, meta.end_pos)

        def to_int(self, token: Token) -> int:
            return _check_int(self.source, str(token), token.start_pos or 0)

        def identifier(self, meta: Any, children: list[Token]) -> Identifier:
            unit, _, field = str(children[0]).partition(".")
            return Identifier(unit, field or None, span=self.span_of(meta))

        def bind(self, meta: Any, children: list[Token]) -> Any:
            name = str(children[0])[1:]
            if name in self.lists:
                return _Spliced(_fast_items(self.source, self.lists[name]))
            return BindParam(name, span=self.span_of(meta))

        def int_(self, meta: Any, children: list[Token]) -> Literal:
            return Literal(self.to_int(children[0]), span=self.span_of(meta))

        def float_(self, meta: Any, children: list[Token]) -> Literal:
            return _make_float(str(children[0]), self.span_of(meta))

        def string(self, meta: Any, children: list[Token]) -> Literal:
            raw = str(children[0])
            quote = raw[0]
            return Literal(raw[1:-1].replace(quote * 2, quote), span=self.span_of(meta))

        def range_(self, meta: Any, children: list[Token]) -> Range:
            start, stop = self.to_int(children[0]), self.to_int(children[1])
            stride = self.to_int(children[2]) if len(children) > 2 else 1
            return _make_range(start, stop, stride, self.span_of(meta))

        def comparison(self, meta: Any, children: list[Any]) -> Comparison:
            left, op, right = children
            op = "!=" if str(op) == "<>" else str(op)
            return Comparison(op, left, right, span=self.span_of(meta))

        def in_items(self, meta: Any, children: list[Any]) -> tuple[Any, ...]:
            items: list[Any] = []
            for child in children:
                items.extend(child.nodes if isinstance(child, _Spliced) else (child,))
            return tuple(items)

        def in_(self, meta: Any, children: list[Any]) -> InList:
            return InList(children[0], children[1], False, span=self.span_of(meta))

        def not_in(self, meta: Any, children: list[Any]) -> InList:
            return InList(children[0], children[1], True, span=self.span_of(meta))

        def not_(self, meta: Any, children: list[Any]) -> Not:
            return Not(children[0], span=self.span_of(meta))

        def and_expr(self, meta: Any, children: list[Any]) -> And:
            terms = [t for child in children for t in (child.terms if isinstance(child, And) else (child,))]
            return And(tuple(terms), span=self.span_of(meta))

        def or_expr(self, meta: Any, children: list[Any]) -> Or:
            terms = [t for child in children for t in (child.terms if isinstance(child, Or) else (child,))]
            return Or(tuple(terms), span=self.span_of(meta))

    return Builder
