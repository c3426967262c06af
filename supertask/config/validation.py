"""Hand-checked validation of scalar, list and dict field values, without pydantic.

Why this exists: every batch job rebuilds its task configs from the saved form, and
building pydantic validators (plus importing pydantic) cost about as much as the rest
of the job's start-up together. The values a job sees are plain `bool`, `int`,
`float` and `str` objects, lists and dicts of them; for those, the rules pydantic
applies are few and are reproduced here exactly, error messages included (the test
``tests/test_config_validation.py`` compares both on generated values).

Anything outside that well-understood domain (subclasses such as ``numpy.float64``
or ``IntEnum``, bytes, command-line strings in an unusual spelling such as
``"1_000"`` or ``" true "``) raises `Unsupported`, and the caller then asks pydantic,
so behaviour on those inputs is pydantic's, unchanged.

The rules reproduced (pydantic 2, ``strict=True`` for assignments from Python,
``strict=False`` for command-line strings parsed as YAML):

- ``int``: strict takes only `int` (not `bool`); lax also takes `bool`, whole
  floats and decimal digit strings.
- ``float``: strict takes `int` and `float` (not `bool`); lax also takes `bool` and
  number strings. An `int` too large for a float is refused.
- ``bool``: strict takes only `bool`; lax also takes 0/1.
- ``str``: only `str` in both modes.
- Bounds are checked upper first (``le``, ``lt``, then ``ge``, ``gt``), the first
  failure reported; a list longer than its maximum fails before its items are
  checked, one shorter than its minimum only after they all passed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "Bounds",
    "Invalid",
    "Unsupported",
    "format_limit",
    "make_bounds",
    "validate_dict",
    "validate_list",
    "validate_scalar",
]


class Invalid(Exception):
    """A value fails validation; ``loc`` and ``msg`` are what pydantic would report first."""

    def __init__(self, msg: str, loc: tuple[Any, ...] = ()):
        super().__init__(msg)
        self.msg, self.loc = msg, loc


class Unsupported(Exception):
    """The value is outside the hand-checked domain: ask pydantic."""


Bounds = tuple[tuple[str, Any], ...]
"""``(operator, limit)`` pairs in the order pydantic checks them."""

_TYPE_MESSAGES = {
    int: "Input should be a valid integer",
    float: "Input should be a valid number",
    bool: "Input should be a valid boolean",
    str: "Input should be a valid string",
}
_FRACTION_MESSAGE = "Input should be a valid integer, got a number with a fractional part"

_CHECKS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "le": (lambda v, limit: v <= limit, "less than or equal to"),
    "lt": (lambda v, limit: v < limit, "less than"),
    "ge": (lambda v, limit: v >= limit, "greater than or equal to"),
    "gt": (lambda v, limit: v > limit, "greater than"),
}

# plain spellings only; anything else (underscores, blanks, "inf", "1.0" for an int) goes to pydantic
_INT_TEXT = re.compile(r"[+-]?(?:0|[1-9][0-9]{0,17})")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_CONTAINERS = (type(None), list, dict, tuple)
_SCALARS = (bool, int, float, str)
_EXACT_FLOAT_INT = 2**53


def format_limit(limit: int | float) -> str:
    """Write a bound as pydantic's messages do: no exponent, no trailing ``.0``.

    pydantic-core formats float limits with Rust's ``Display``: the shortest digits
    that round-trip, written out in full (``1e-07`` is ``0.0000001``, ``1e20`` is
    ``100000000000000000000``).
    """
    if isinstance(limit, int):
        return str(limit)
    if math.isinf(limit):
        return "inf" if limit > 0 else "-inf"
    if math.isnan(limit):
        return "NaN"
    if limit == 0:
        return "-0" if math.copysign(1.0, limit) < 0 else "0"
    from decimal import Decimal  # only error messages need it

    text = format(Decimal(repr(limit)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def make_bounds(
    dtype: type, minimum: float | None, maximum: float | None, inclusive_min: bool, inclusive_max: bool
) -> Bounds:
    """The bounds of a numeric field in checking order, limits converted to ``dtype``.

    Raises
    ------
    TypeError
        If an `int` field is given a bound with a fractional part (pydantic would refuse
        to build its validator, at the first assignment rather than here).
    """
    bounds: list[tuple[str, Any]] = []
    for op, limit in (
        ("le" if inclusive_max else "lt", maximum),
        ("ge" if inclusive_min else "gt", minimum),
    ):
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise TypeError(f"field bounds must be numbers, not {limit!r}")
        if dtype is int:
            if isinstance(limit, float) and not limit.is_integer():
                fix = (
                    f"use {math.floor(limit) if op in ('le', 'lt') else math.ceil(limit)}"
                    if math.isfinite(limit)
                    else "leave the bound out (None)"
                )
                raise TypeError(
                    f"bounds of an int field must be whole numbers, not {limit!r}: {fix} or make the "
                    "field a float"
                )
            limit = int(limit)
        else:
            limit = float(limit)
        bounds.append((op, limit))
    return tuple(bounds)


def _check_bounds(value: Any, bounds: Bounds, loc: tuple[Any, ...]) -> None:
    for op, limit in bounds:
        test, words = _CHECKS[op]
        if not test(value, limit):
            raise Invalid(f"Input should be {words} {format_limit(limit)}", loc)


def _convert(dtype: type, value: Any, strict: bool, loc: tuple[Any, ...]) -> Any:
    kind = type(value)
    if dtype is kind and dtype is not float:
        return value
    if dtype is float:
        if kind is float:
            return value
        if kind is int or (kind is bool and not strict):
            try:
                return float(value)
            except OverflowError:
                raise Invalid(_TYPE_MESSAGES[float], loc) from None
        if kind is str and not strict:
            if _FLOAT_TEXT.fullmatch(value):
                return float(value)
            raise Unsupported
    elif dtype is int and not strict:
        if kind is bool:
            return int(value)
        if kind is float:
            if math.isfinite(value) and not value.is_integer():
                raise Invalid(_FRACTION_MESSAGE, loc)
            if math.isfinite(value) and abs(value) < _EXACT_FLOAT_INT:
                return int(value)
            raise Unsupported
        if kind is str:
            if _INT_TEXT.fullmatch(value):
                return int(value)
            raise Unsupported
    elif dtype is bool and not strict:
        if kind in (int, float) and value in (0, 1):
            return bool(value)
        if kind in (int, float, str):
            raise Unsupported
    # a wrong type among those whose refusal is certain; anything else is pydantic's call
    if kind in _CONTAINERS or (kind in _SCALARS and (strict or dtype is str)):
        raise Invalid(_TYPE_MESSAGES[dtype], loc)
    raise Unsupported


def validate_scalar(
    dtype: type, value: Any, strict: bool, bounds: Bounds = (), loc: tuple[Any, ...] = ()
) -> Any:
    """Validate one scalar; returns the converted value.

    Raises
    ------
    Invalid
        With pydantic's first error.
    Unsupported
        If the value is outside the hand-checked domain.
    """
    result = _convert(dtype, value, strict, loc)
    if bounds:
        _check_bounds(result, bounds, loc)
    return result


def validate_list(
    dtype: type,
    items: Sequence[Any],
    strict: bool,
    item_bounds: Bounds = (),
    min_length: int | None = None,
    max_length: int | None = None,
) -> list[Any]:
    """Validate a list of scalars (lengths, then each item with its index as location)."""
    if max_length is not None and len(items) > max_length:
        raise Invalid(_length_message("at most", max_length, len(items)))
    result = [validate_scalar(dtype, item, strict, item_bounds, (i,)) for i, item in enumerate(items)]
    if min_length and len(result) < min_length:
        raise Invalid(_length_message("at least", min_length, len(result)))
    return result


def _length_message(which: str, limit: int, actual: int) -> str:
    return f"List should have {which} {limit} item{'' if limit == 1 else 's'} after validation, not {actual}"


def validate_dict(keytype: type, itemtype: type, data: dict[Any, Any], strict: bool) -> dict[Any, Any]:
    """Validate a dict of scalars: each key (location ``(key, "[key]")``), then its value."""
    result = {}
    for key, item in data.items():
        new_key = validate_scalar(keytype, key, strict, (), (key, "[key]"))
        result[new_key] = validate_scalar(itemtype, item, strict, (), (key,))
    return result
