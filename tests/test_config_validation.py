"""The hand-checked validation of `supertask.config.validation` agrees with pydantic.

The fast path replaces pydantic for plain values so that batch jobs need not import it;
these tests generate values and field specifications and require the same verdict as
the pydantic ``TypeAdapter`` the fields used before: the same converted value (and
type), or the same first error location and message. Inputs the fast path declines
(`Unsupported`) are pydantic's by construction and are only counted.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from typing import Annotated, Any

import annotated_types as at
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ConfigDict as PydanticConfig
from pydantic import TypeAdapter, ValidationError

from supertask.config import Config, Field, FieldValidationError, ListField
from supertask.config.validation import (
    Invalid,
    Unsupported,
    format_limit,
    make_bounds,
    validate_dict,
    validate_list,
    validate_scalar,
)

_ADAPTERS: dict[tuple[Any, bool], TypeAdapter] = {}


def _pydantic(annotation: Any, value: Any, strict: bool) -> tuple[str, Any]:
    key = (annotation, strict)
    if key not in _ADAPTERS:
        _ADAPTERS[key] = TypeAdapter(annotation, config=PydanticConfig(strict=strict))
    try:
        return "ok", _ADAPTERS[key].validate_python(value)
    except ValidationError as err:
        first = err.errors()[0]
        return "error", (tuple(first["loc"]), first["msg"])


def _fast(call: Any) -> tuple[str, Any] | None:
    try:
        return "ok", call()
    except Invalid as err:
        return "error", (err.loc, err.msg)
    except Unsupported:
        return None


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type, element-wise; NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


def _assert_agree(fast: tuple[str, Any] | None, slow: tuple[str, Any]) -> None:
    assume(fast is not None)
    assert fast[0] == slow[0], (fast, slow)
    if fast[0] == "ok":
        assert _same(fast[1], slow[1]), (fast, slow)
    else:
        assert fast[1] == slow[1]


_numeric_text = st.one_of(
    st.from_regex(r"[+-]?[0-9]{1,20}(\.[0-9]{0,3})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(
        ["0", "-0", "+5", "007", "1_000", " 12 ", "1.0", "1.5", ".5", "5.", "inf", "nan", "1e400"]
    ),
    st.sampled_from(["true", "TRUE", "yes", "off", "t", "n", "maybe", "", " ", "-1", "2"]),
)
_values = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.sampled_from([0.0, 1.0, -0.0, 0.5, 3.0, 1e20, 2.0**53, 2.0**63, float("inf"), float("nan")]),
    st.text(max_size=6),
    _numeric_text,
    st.none(),
    st.just([1]),
    st.just({}),
    st.just(b"x"),
)
# no -0.0: typing caches ``Annotated[...]`` by equality, so a -0.0 limit would reuse the validator
# built for 0.0 (or the reverse) and be compared with the wrong message; format_limit's test covers it
_limits = st.one_of(
    st.none(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False).filter(lambda x: x != 0 or math.copysign(1.0, x) > 0),
    st.sampled_from([0, 0.0, 1, 1e-7, 1 / 3, 1e16, 2.0**70]),
)


def _annotation(dtype: type, bounds: tuple[tuple[str, Any], ...]) -> Any:
    constraints = [getattr(at, op.capitalize())(limit) for op, limit in bounds]
    return Annotated[dtype, *constraints] if constraints else dtype


@settings(max_examples=600, deadline=None)
@given(
    dtype=st.sampled_from([bool, int, float, str]),
    value=_values,
    strict=st.booleans(),
    lo=_limits,
    hi=_limits,
    inclusive=st.tuples(st.booleans(), st.booleans()),
)
def test_scalar_verdict_matches_pydantic(dtype, value, strict, lo, hi, inclusive):
    if dtype not in (int, float):
        lo = hi = None
    try:
        bounds = make_bounds(dtype, lo, hi, *inclusive)
    except TypeError:
        assume(False)
    # pydantic keeps int limits in 64 bits; larger ones are a corner no config uses
    assume(all(not isinstance(limit, int) or abs(limit) < 2**63 for _, limit in bounds))
    fast = _fast(lambda: validate_scalar(dtype, value, strict, bounds))
    _assert_agree(fast, _pydantic(_annotation(dtype, bounds), value, strict))


@settings(max_examples=300, deadline=None)
@given(
    dtype=st.sampled_from([bool, int, float, str]),
    items=st.lists(_values, max_size=4),
    strict=st.booleans(),
    lengths=st.tuples(st.none() | st.integers(0, 3), st.none() | st.integers(0, 3)),
    item_limits=st.tuples(st.none() | st.integers(-5, 5), st.none() | st.integers(-5, 5)),
)
def test_list_verdict_matches_pydantic(dtype, items, strict, lengths, item_limits):
    item_min, item_max = item_limits if dtype in (int, float) else (None, None)
    bounds = make_bounds(dtype, item_min, item_max, True, True)
    min_length, max_length = lengths
    item: Any = dtype
    if item_min is not None or item_max is not None:
        item = Annotated[dtype, at.Interval(ge=item_min, le=item_max)]
    annotation = Annotated[list[item], at.Len(min_length or 0, max_length)]
    fast = _fast(lambda: validate_list(dtype, items, strict, bounds, min_length, max_length))
    _assert_agree(fast, _pydantic(annotation, items, strict))


@settings(max_examples=300, deadline=None)
@given(
    keytype=st.sampled_from([bool, int, float, str]),
    itemtype=st.sampled_from([bool, int, float, str]),
    data=st.dictionaries(
        st.one_of(st.text(max_size=3), st.integers(-3, 3), st.booleans()), _values, max_size=4
    ),
    strict=st.booleans(),
)
def test_dict_verdict_matches_pydantic(keytype, itemtype, data, strict):
    fast = _fast(lambda: validate_dict(keytype, itemtype, data, strict))
    _assert_agree(fast, _pydantic(dict[keytype, itemtype], data, strict))  # type: ignore[valid-type]


@pytest.mark.parametrize(
    "dtype,value",
    [(bool, True), (int, -(2**80)), (float, 2.5), (float, 7), (str, "x"), (float, float("nan"))],
)
def test_plain_values_never_need_pydantic(dtype, value):
    # the values a saved config holds must stay on the fast path in strict mode (what loading uses)
    result = validate_scalar(dtype, value, True)
    assert type(result) is dtype and (result == value or result != result)


@pytest.mark.parametrize(
    "limit,text",
    [
        (0.0, "0"),
        (-0.0, "-0"),  # pydantic-core writes a negative zero limit with its sign
        (1e-7, "0.0000001"),
        (1e20, "100000000000000000000"),
        (1 / 3, "0.3333333333333333"),
        (5, "5"),
    ],
)
def test_limits_are_written_as_pydantic_writes_them(limit, text):
    assert format_limit(limit) == text


def test_int_field_with_fractional_bound_is_refused_at_declaration():
    with pytest.raises(TypeError, match="whole numbers, not 0.5: use 1 or make the field a float"):
        Field(dtype=int, doc="a count", min=0.5)
    with pytest.raises(TypeError, match="itemMin/itemMax only apply"):
        ListField(dtype=str, doc="names", itemMin=1)
    with pytest.raises(TypeError, match="not inf: leave the bound out"):
        Field(dtype=int, doc="a count", max=float("inf"))
    assert Field(dtype=int, doc="a count", min=2.0)._bounds == (("ge", 2),)


_PLAIN_CONFIG = """
from supertask.config import Config, DictField, Field, ListField

class Plain(Config):
    count = Field(dtype=int, default=3, doc="A count.", min=0, max=10)
    scale = Field(dtype=float, default=1.5, doc="A scale.", min=0.0, inclusiveMin=False)
    mode = Field(dtype=str, default="a", doc="A mode.", allowed=["a", "b"])
    flag = Field(dtype=bool, default=False, doc="A flag.")
    sizes = ListField(dtype=int, default=[1, 2], doc="Sizes.", itemMin=0, maxLength=3)
    table = DictField(keytype=str, itemtype=float, default={"k": 1.0}, doc="A table.")
"""


def _plain_class() -> type[Config]:
    namespace: dict[str, Any] = {}
    exec(_PLAIN_CONFIG, namespace)
    return namespace["Plain"]


def test_values_outside_the_fast_path_still_validate_through_pydantic():
    import numpy as np

    config = _plain_class()()
    config.scale = np.float64(2.5)  # a float subclass: pydantic decides
    assert config.scale == 2.5
    config.sizes = [1, 2]
    with pytest.raises(FieldValidationError, match=r"'sizes'.* at \[0\]: Input should be a valid integer"):
        config.sizes = ["1"]
    with pytest.raises(FieldValidationError, match="less than or equal to 10"):
        config.count = 11


def test_config_build_save_load_and_string_overrides_do_not_import_pydantic():
    code = _PLAIN_CONFIG + textwrap.dedent(
        """
        import sys
        from supertask.config.overrides import apply_string
        config = Plain(count=4, sizes=[3], table={"x": 2.0})
        for text in ("count=7", "scale=1e-3", "flag=true", "sizes=[1, 2]", "table={a: 2}", "mode=b"):
            apply_string(config, text)
        loaded = Plain.loadFromString(config.saveToString())
        assert loaded == config and loaded.scale == 1e-3, loaded
        try:
            config.count = "many"
        except ValueError as err:
            print(err)
        print(sorted(m for m in ("pydantic", "pydantic_core", "annotated_types") if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    error, modules = out.strip().splitlines()
    assert "'count'" in error and "Input should be a valid integer" in error
    assert modules == "[]"


def test_import_defers_modules_only_rare_paths_need():
    # digest (hashlib, json), "did you mean" (difflib), retargeting (inspect) and error messages (decimal)
    code = (
        "import sys, supertask.config; "
        "print(sorted(m for m in ('decimal', 'difflib', 'hashlib', 'json', 'inspect') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
