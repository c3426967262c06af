"""The rules of `supertask.config.validation`, the only validator of config fields, on their own.

Each rule listed in the module's docstring is checked here: what strict mode (Python
assignments) and lax mode (command-line text) accept, what they return (always a plain
`int`, `float`, `bool` or `str`), the order bounds and lengths are checked in, and the
messages, which are ours.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from supertask.config import Config, Field, FieldValidationError, ListField
from supertask.config.validation import (
    Invalid,
    format_limit,
    make_bounds,
    validate_dict,
    validate_list,
    validate_scalar,
)


def _error(call: Any) -> tuple[tuple[Any, ...], str]:
    with pytest.raises(Invalid) as info:
        call()
    return info.value.loc, info.value.msg


@given(st.integers())
def test_strict_int_takes_every_int_and_returns_it_plain(value):
    assert validate_scalar(int, value, True) == value


@pytest.mark.parametrize("value", [True, 1.0, "1", None, [1], b"1"])
def test_strict_int_refuses_bools_floats_and_text(value):
    assert _error(lambda: validate_scalar(int, value, True)) == (
        (),
        "give a whole number such as 3 (a bool, a float or text is not one)",
    )


@pytest.mark.parametrize("value", [np.int64(7), np.uint8(7), np.int32(7)])
def test_numpy_integers_become_plain_ints(value):
    result = validate_scalar(int, value, True)
    assert type(result) is int and result == 7


@pytest.mark.parametrize(
    "value,expected",
    [(True, 1), (4.0, 4), ("12", 12), (" -3 ", -3), ("1_000", 1000), ("1e3", 1000), (np.float64(2.0), 2)],
)
def test_lax_int_takes_bools_whole_floats_and_integer_text(value, expected):
    result = validate_scalar(int, value, False)
    assert type(result) is int and result == expected


@pytest.mark.parametrize(
    "value,message",
    [
        (2.5, "it has a fractional part; give a whole number"),
        ("2.5", "it has a fractional part; give a whole number"),
        ("many", "give a whole number such as 3"),
        (float("inf"), "give a whole number such as 3"),
        (None, "give a whole number such as 3"),
    ],
)
def test_lax_int_refusals_say_why(value, message):
    assert _error(lambda: validate_scalar(int, value, False)) == ((), message)


@given(st.one_of(st.integers(min_value=-(2**1000), max_value=2**1000), st.floats()))
def test_strict_float_takes_ints_and_floats_and_returns_a_plain_float(value):
    result = validate_scalar(float, value, True)
    assert type(result) is float
    assert result == float(value) or (math.isnan(result) and math.isnan(value))


@pytest.mark.parametrize("value", [np.float64(2.5), np.float32(2.5), np.int16(2)])
def test_numpy_numbers_become_plain_floats(value):
    result = validate_scalar(float, value, True)
    assert type(result) is float and result == float(value)


@pytest.mark.parametrize("value", [True, "2.5", None, (1.0,)])
def test_strict_float_refuses_bools_and_text(value):
    assert _error(lambda: validate_scalar(float, value, True)) == (
        (),
        "give a number such as 0.5 (a bool or text is not one)",
    )


def test_an_int_too_large_for_a_float_is_refused():
    assert _error(lambda: validate_scalar(float, 10**400, True)) == ((), "it is too large for a float")


@pytest.mark.parametrize(
    "value,expected", [(True, 1.0), (3, 3.0), ("1e-3", 1e-3), (" 2.5 ", 2.5), ("inf", math.inf)]
)
def test_lax_float_takes_bools_and_number_text(value, expected):
    result = validate_scalar(float, value, False)
    assert type(result) is float and result == expected


def test_lax_float_refuses_other_text():
    assert _error(lambda: validate_scalar(float, "fast", False)) == ((), "give a number such as 0.5 or 1e-3")


@pytest.mark.parametrize("value", [1, 0, 1.0, "true", None])
def test_strict_bool_takes_only_bools(value):
    assert _error(lambda: validate_scalar(bool, value, True)) == ((), "give True or False")
    assert validate_scalar(bool, True, True) is True and validate_scalar(bool, np.bool_(False), True) is False


@pytest.mark.parametrize(
    "value,expected",
    [(1, True), (0.0, False), ("Yes", True), ("off", False), (" T ", True), ("n", False), ("1", True)],
)
def test_lax_bool_takes_zero_one_and_the_usual_words(value, expected):
    assert validate_scalar(bool, value, False) is expected


@pytest.mark.parametrize("value", [2, "maybe", None])
def test_lax_bool_refuses_anything_else(value):
    assert _error(lambda: validate_scalar(bool, value, False)) == ((), "give true or false")


@pytest.mark.parametrize("strict", [True, False])
def test_str_takes_only_text_in_both_modes(strict):
    assert validate_scalar(str, "abc", strict) == "abc"
    assert _error(lambda: validate_scalar(str, 5, strict)) == ((), "give text (a str)")


def test_bounds_check_the_upper_limit_first_and_report_the_first_failure():
    bounds = make_bounds(int, 5, 2, True, False)  # an impossible range: both fail for 3
    assert bounds == (("<", 2), (">=", 5))
    assert _error(lambda: validate_scalar(int, 3, True, bounds)) == ((), "it must be < 2")
    assert _error(lambda: validate_scalar(float, -0.5, True, make_bounds(float, 0, None, False, True))) == (
        (),
        "it must be > 0",
    )
    assert validate_scalar(float, 0.5, True, make_bounds(float, 0, 1, True, True)) == 0.5


@pytest.mark.parametrize(
    "limit,text", [(0.0, "0"), (2.5, "2.5"), (1e-7, "1e-07"), (5, "5"), (1e20, "100000000000000000000")]
)
def test_limits_are_written_without_a_needless_fraction(limit, text):
    assert format_limit(limit) == text


def test_list_too_long_fails_before_its_items_too_short_after_them():
    assert _error(lambda: validate_list(int, ["x", "y", "z"], True, max_length=2)) == (
        (),
        "give at most 2 items, not 3",
    )
    assert _error(lambda: validate_list(int, ["x"], True, min_length=2)) == (
        (0,),
        "give a whole number such as 3 (a bool, a float or text is not one)",
    )
    assert _error(lambda: validate_list(int, [1], True, min_length=2)) == ((), "give at least 2 items, not 1")
    assert _error(lambda: validate_list(int, [1, 2], True, min_length=1, max_length=1)) == (
        (),
        "give at most 1 item, not 2",
    )


def test_list_items_are_located_by_index_and_bounded():
    bounds = make_bounds(float, 0.0, None, True, True)
    assert validate_list(float, [1, 2.5], True, bounds) == [1.0, 2.5]
    assert _error(lambda: validate_list(float, [1.0, -1.0], True, bounds)) == ((1,), "it must be >= 0")


def test_dict_keys_then_values_are_checked_and_located_at_their_key():
    assert validate_dict(str, float, {"a": 1}, True) == {"a": 1.0}
    assert _error(lambda: validate_dict(str, float, {1: 1.0}, True)) == ((1,), "the key: give text (a str)")
    assert _error(lambda: validate_dict(str, float, {"a": "x"}, True)) == (
        ("a",),
        "give a number such as 0.5 (a bool or text is not one)",
    )
    assert validate_dict(int, bool, {"3": "yes"}, False) == {3: True}


def test_int_field_with_fractional_bound_is_refused_at_declaration():
    with pytest.raises(TypeError, match="whole numbers, not 0.5: use 1 or make the field a float"):
        Field(dtype=int, doc="a count", min=0.5)
    with pytest.raises(TypeError, match="itemMin/itemMax only apply"):
        ListField(dtype=str, doc="names", itemMin=1)
    with pytest.raises(TypeError, match="not inf: leave the bound out"):
        Field(dtype=int, doc="a count", max=float("inf"))
    assert Field(dtype=int, doc="a count", min=2.0)._bounds == ((">=", 2),)


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


def test_field_errors_name_the_field_the_value_where_and_the_rule():
    config = _plain_class()()
    config.scale = np.float64(2.5)
    assert config.scale == 2.5 and type(config.scale) is float  # the saved form stays plain YAML
    with pytest.raises(FieldValidationError, match=r"'sizes'.* at \[0\]: give a whole number"):
        config.sizes = ["1"]
    with pytest.raises(FieldValidationError, match="'count'.*: it must be <= 10"):
        config.count = 11


def test_config_build_save_load_and_string_overrides_import_no_validation_library():
    code = _PLAIN_CONFIG + textwrap.dedent(
        """
        import sys
        from supertask.config.overrides import apply_string
        config = Plain(count=4, sizes=[3], table={"x": 2.0})
        for text in ("count=7", "scale=1e-3", "flag=true", "sizes=[1, 2]", "table={a: 2}", "mode=b", "count=1_0"):
            apply_string(config, text)
        loaded = Plain.loadFromString(config.saveToString())
        assert loaded == config and loaded.scale == 1e-3 and loaded.count == 10, loaded
        try:
            config.count = "many"
        except ValueError as err:
            print(err)
        print(sorted(m for m in ("pydantic", "pydantic_core", "annotated_types") if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    error, modules = out.strip().splitlines()
    assert "'count'" in error and "give a whole number" in error
    assert modules == "[]"


def test_no_module_of_the_core_imports_pydantic():
    import supertask

    root = Path(supertask.__file__).parent
    importers = [
        str(path.relative_to(root))
        for path in sorted(root.rglob("*.py"))
        if any(
            line.strip().startswith(("import pydantic", "from pydantic"))
            for line in path.read_text().splitlines()
        )
    ]
    assert importers == []
