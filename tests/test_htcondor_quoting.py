"""Quoting of arguments, environment and VARS values: round trips through every layer."""

from __future__ import annotations

import htcondor2
from hypothesis import given, settings
from hypothesis import strategies as st

from bps.wms.htcondor.quoting import (
    environment_value,
    join_arguments,
    split_arguments,
    unquote_vars_value,
    vars_value,
)

_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="$"), max_size=12
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_text, max_size=6))
def test_arguments_round_trip(args):
    assert split_arguments(join_arguments(args)) == args


@settings(max_examples=200, deadline=None)
@given(_text)
def test_vars_values_round_trip(text):
    assert unquote_vars_value(vars_value(text)) == text


def test_arguments_survive_htcondor2_macro_expansion():
    args = ["--where", "visit = 3 AND band = 'r'", 'say "hi"', ""]
    sub = htcondor2.Submit('arguments = "--graph g $(bps_args)"\nqueue\n')
    sub["bps_args"] = join_arguments(args)
    assert split_arguments(sub.expand("arguments").strip('"')) == ["--graph", "g", *args]


def test_environment_values_with_spaces_are_quoted():
    assert environment_value({"A": "x y", "B": "1"}) == "A='x y' B=1"


def test_invalid_environment_names_are_refused():
    import pytest

    with pytest.raises(ValueError, match="invalid environment variable name"):
        environment_value({"A B": "1"})
