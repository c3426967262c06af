"""Validation of scalar, list and dict field values: the rules and the messages are ours.

This is the only validator of config fields. It is small on purpose: every batch job
rebuilds its task configs from their saved form, so validation sits on the job's
start-up path, and a general validation library (building validators, importing it)
would cost as much as the rest of that start-up together.

Two modes:

- *strict*, for assignments from Python (override files, task code): no conversion
  between kinds, because a silent one hides mistakes (``"5"`` is not a float, ``1`` is
  not a bool);
- *lax*, for text from the command line (``label:field=value``, parsed as YAML first):
  the spellings a user types are converted.

The rules:

- ``int``: strict takes integers (`int` and its subclasses, numpy integers), never a
  `bool`; lax also takes `bool`, whole floats and integer text (``"12"``, ``"-3"``,
  ``"1_000"``, ``"1e3"`` when whole).
- ``float``: strict takes real numbers (`int`, `float`, their subclasses, numpy
  floats and integers), never a `bool`; lax also takes `bool` and number text
  (``"1e-3"``, ``"inf"``). An integer too large for a float is refused.
- ``bool``: strict takes only `bool`; lax also takes the numbers 0 and 1 and the words
  ``true/false, yes/no, on/off, t/f, y/n, 1/0`` in any case.
- ``str``: `str` only, in both modes.
- Values come back as plain `int`, `float`, `bool`, `str` (a numpy scalar does not
  survive into a config, whose saved form must stay plain YAML).
- Bounds: the upper bound is checked before the lower; the first failure is reported.
  A list longer than its maximum fails before its items are checked, one shorter than
  its minimum only after they all passed (so an item error is not hidden).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "Bounds",
    "Invalid",
    "format_limit",
    "make_bounds",
    "validate_dict",
    "validate_list",
    "validate_scalar",
]


class Invalid(Exception):
    """A value fails validation; ``loc`` says where inside a list or dict, ``msg`` what is wrong.

    Parameters
    ----------
    msg : `str`
        What is wrong and what would be accepted.
    loc : `tuple`, optional
        Index or key path inside the value (empty for a scalar).
    """

    def __init__(self, msg: str, loc: tuple[Any, ...] = ()):
        super().__init__(msg)
        self.msg, self.loc = msg, loc


Bounds = tuple[tuple[str, Any], ...]
"""``(operator, limit)`` pairs in checking order; operators are ``<=``, ``<``, ``>=``, ``>``."""

_TYPE_MESSAGES = {
    (int, True): "give a whole number such as 3 (a bool, a float or text is not one)",
    (int, False): "give a whole number such as 3",
    (float, True): "give a number such as 0.5 (a bool or text is not one)",
    (float, False): "give a number such as 0.5 or 1e-3",
    (bool, True): "give True or False",
    (bool, False): "give true or false",
    (str, True): "give text (a str)",
    (str, False): "give text (a str)",
}
_FRACTION_MESSAGE = "it has a fractional part; give a whole number"
_TOO_LARGE_MESSAGE = "it is too large for a float"

_CHECKS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": lambda v, limit: v <= limit,
    "<": lambda v, limit: v < limit,
    ">=": lambda v, limit: v >= limit,
    ">": lambda v, limit: v > limit,
}
_TRUE_WORDS = frozenset({"true", "yes", "on", "t", "y", "1"})
_FALSE_WORDS = frozenset({"false", "no", "off", "f", "n", "0"})


def format_limit(limit: int | float) -> str:
    """Write a bound for a message: integers as they are, floats without a needless ``.0``."""
    if isinstance(limit, float) and limit.is_integer():
        return str(int(limit))
    return str(limit)


def make_bounds(
    dtype: type, minimum: float | None, maximum: float | None, inclusive_min: bool, inclusive_max: bool
) -> Bounds:
    """The bounds of a numeric field in checking order, limits converted to ``dtype``.

    Raises
    ------
    TypeError
        If a bound is not a number, or an `int` field is given a bound with a
        fractional part (the field could never be set to it; the message says the fix).
    """
    bounds: list[tuple[str, Any]] = []
    for op, limit in (
        ("<=" if inclusive_max else "<", maximum),
        (">=" if inclusive_min else ">", minimum),
    ):
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise TypeError(f"field bounds must be numbers, not {limit!r}")
        if dtype is int:
            if isinstance(limit, float) and not limit.is_integer():
                fix = (
                    f"use {math.floor(limit) if op in ('<=', '<') else math.ceil(limit)}"
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
        if not _CHECKS[op](value, limit):
            raise Invalid(f"it must be {op} {format_limit(limit)}", loc)


def _is_bool(value: Any) -> bool:
    """`bool` or a numpy bool (which is not a `bool` subclass, but is no number either)."""
    return isinstance(value, bool) or type(value).__name__ in ("bool_", "bool")


def _to_int(value: Any, strict: bool, loc: tuple[Any, ...]) -> int:
    if _is_bool(value):
        if strict:
            raise Invalid(_TYPE_MESSAGES[int, True], loc)
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if strict:
        raise Invalid(_TYPE_MESSAGES[int, True], loc)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise Invalid(_TYPE_MESSAGES[int, False], loc) from None
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise Invalid(_TYPE_MESSAGES[int, False], loc)
        if not number.is_integer():
            raise Invalid(_FRACTION_MESSAGE, loc)
        return int(number)
    raise Invalid(_TYPE_MESSAGES[int, False], loc)


def _to_float(value: Any, strict: bool, loc: tuple[Any, ...]) -> float:
    if _is_bool(value):
        if strict:
            raise Invalid(_TYPE_MESSAGES[float, True], loc)
        return float(value)
    if isinstance(value, str) and not strict:
        try:
            return float(value.strip())
        except ValueError:
            raise Invalid(_TYPE_MESSAGES[float, False], loc) from None
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError:
            raise Invalid(_TOO_LARGE_MESSAGE, loc) from None
    raise Invalid(_TYPE_MESSAGES[float, strict], loc)


def _to_bool(value: Any, strict: bool, loc: tuple[Any, ...]) -> bool:
    if _is_bool(value):
        return bool(value)
    if not strict:
        if isinstance(value, numbers.Real) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE_WORDS:
                return True
            if word in _FALSE_WORDS:
                return False
    raise Invalid(_TYPE_MESSAGES[bool, strict], loc)


def _to_str(value: Any, strict: bool, loc: tuple[Any, ...]) -> str:
    if isinstance(value, str):
        return str(value)
    raise Invalid(_TYPE_MESSAGES[str, strict], loc)


_CONVERTERS: dict[type, Callable[[Any, bool, tuple[Any, ...]], Any]] = {
    int: _to_int,
    float: _to_float,
    bool: _to_bool,
    str: _to_str,
}


def validate_scalar(
    dtype: type, value: Any, strict: bool, bounds: Bounds = (), loc: tuple[Any, ...] = ()
) -> Any:
    """Validate one scalar of type ``dtype`` (`int`, `float`, `bool`, `str`); returns the plain value.

    Raises
    ------
    Invalid
        The first rule the value breaks.
    """
    result = value if type(value) is dtype else _CONVERTERS[dtype](value, strict, loc)
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
    """Validate a list of scalars (the maximum length, then each item with its index as location)."""
    if max_length is not None and len(items) > max_length:
        raise Invalid(_length_message("at most", max_length, len(items)))
    result = [validate_scalar(dtype, item, strict, item_bounds, (i,)) for i, item in enumerate(items)]
    if min_length and len(result) < min_length:
        raise Invalid(_length_message("at least", min_length, len(result)))
    return result


def _length_message(which: str, limit: int, actual: int) -> str:
    return f"give {which} {limit} item{'' if limit == 1 else 's'}, not {actual}"


def validate_dict(keytype: type, itemtype: type, data: dict[Any, Any], strict: bool) -> dict[Any, Any]:
    """Validate a dict of scalars: each key, then its value (both located at the key)."""
    result = {}
    for key, item in data.items():
        try:
            new_key = validate_scalar(keytype, key, strict, (), (key,))
        except Invalid as err:
            raise Invalid(f"the key: {err.msg}", err.loc) from None
        result[new_key] = validate_scalar(itemtype, item, strict, (), (key,))
    return result
