"""Expressions at the edges: 64-bit arithmetic, thousands of terms, huge lists, database limits.

Every case runs against real SQLite and, when a server is configured, real PostgreSQL
(the ``engine`` fixture of ``test_expr``): each outcome must be the right rows or an
`ExpressionError` naming the limit, never a database error.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from test_expr import _row_values, engine, expected_ids, resolver, select_ids  # noqa: F401

from supertask.expr import (
    ExpressionSyntaxError,
    ExpressionValueError,
    InList,
    compile_expression,
    parse_expression,
)
from supertask.expr import compiler as expr_compiler
from supertask.expr import parser as expr_parser

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
VISITS = sorted({row["visit"] for row in _row_values()})


# -- 64-bit arithmetic -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "start",
    [INT64_MIN + 2, INT64_MIN, INT64_MIN + 1, -9_000_000_000_000_000_001, -7],
)
def test_strided_range_from_the_bottom_of_int64_selects_the_values_of_its_residue(
    engine,  # noqa: F811
    resolver,  # noqa: F811
    start,
):
    # (visit - start) overflows 64 bits here; the compiled remainder test must not.
    text = f"visit IN ({start}..200:2)"
    assert select_ids(engine, resolver, text) == expected_ids(lambda r: (r["visit"] - start) % 2 == 0)


def test_issue_example_selects_the_even_visits_on_both_backends(engine, resolver):  # noqa: F811
    text = "visit IN (-9223372036854775806..200:2) AND visit >= 100 AND visit <= 104"
    assert select_ids(engine, resolver, text) == expected_ids(lambda r: r["visit"] in (100, 102, 104))


@pytest.mark.parametrize("stride", [3, 7, 2**62, INT64_MAX])
def test_strided_range_up_to_the_top_of_int64_selects_the_values_of_its_residue(
    engine,  # noqa: F811
    resolver,  # noqa: F811
    stride,
):
    start = 101
    text = f"visit IN ({start}..{INT64_MAX}:{stride})"
    assert select_ids(engine, resolver, text) == expected_ids(
        lambda r: r["visit"] >= start and (r["visit"] - start) % stride == 0
    )


def test_strided_python_range_bind_is_a_range_not_a_list(engine, resolver):  # noqa: F811
    bind = {"vs": range(INT64_MAX - 1, 97, -3)}  # 3 * 10**18 values, descending
    expected = expected_ids(lambda r: r["visit"] in bind["vs"])
    assert expected  # the rows do hold some of them
    assert select_ids(engine, resolver, "visit IN (:vs)", bind) == expected
    clause = compile_expression("visit IN (:vs)", resolver, bind)
    assert len(clause.compile().params) <= 5  # a BETWEEN and a remainder test, not a list


# -- many terms and long lists ----------------------------------------------------------------


def test_two_thousand_or_equalities_fold_into_one_in_list(engine, resolver):  # noqa: F811
    text = " OR ".join(f"visit = {v}" for v in range(0, 4000, 2))
    assert select_ids(engine, resolver, text) == expected_ids(lambda r: r["visit"] % 2 == 0)
    tree = parse_expression(text)
    assert len(tree.terms) == 2000


def test_two_thousand_or_terms_that_cannot_fold_are_a_balanced_tree(engine, resolver):  # noqa: F811
    text = " OR ".join(f"(visit = {v} AND detector = {v % 3 + 1})" for v in range(2000))
    assert select_ids(engine, resolver, text) == expected_ids(lambda r: r["detector"] == r["visit"] % 3 + 1)


def test_long_and_chains_are_balanced_too(engine, resolver):  # noqa: F811
    text = " AND ".join(f"visit != {v}" for v in range(1500) if v not in (100, 101))
    assert select_ids(engine, resolver, text) == expected_ids(lambda r: r["visit"] in (100, 101))


def test_in_list_of_two_thousand_ranges_selects_their_union(engine, resolver):  # noqa: F811
    text = "visit IN (" + ", ".join(f"{v}..{v}" for v in range(0, 4000, 2)) + ")"
    assert select_ids(engine, resolver, text) == expected_ids(lambda r: r["visit"] % 2 == 0)
    # long ranges stay range conditions (a balanced OR of them)
    text = "visit IN (" + ", ".join(f"{v}..{v + 10**12}:{10**6 + v}" for v in range(0, 1000, 2)) + ")"
    assert select_ids(engine, resolver, text) == expected_ids(lambda r: r["visit"] % 2 == 0)


def test_bind_list_beyond_every_parameter_limit_is_one_parameter(engine, resolver):  # noqa: F811
    values = list(range(0, 600_000, 2))  # > SQLite's 250,000 and PostgreSQL's 65,535 parameters
    bind = {"vs": values}
    assert select_ids(engine, resolver, "visit IN (:vs)", bind) == expected_ids(lambda r: r["visit"] % 2 == 0)
    assert select_ids(engine, resolver, "visit NOT IN (:vs) AND detector = 1", bind) == expected_ids(
        lambda r: r["visit"] % 2 == 1 and r["detector"] == 1
    )
    assert len(compile_expression("visit IN (:vs)", resolver, bind).compile().params) == 1


def test_long_string_and_float_lists_select_like_short_ones(engine, resolver):  # noqa: F811
    bands = ["g", "O'Brien", "é", "r"] + [f"x{i}" for i in range(3000)]
    times = [15.0, 25.0] + [1000.5 + i for i in range(3000)]
    text = "band IN (:bands) AND exposure.exposure_time NOT IN (:times)"
    assert select_ids(engine, resolver, text, {"bands": bands, "times": times}) == expected_ids(
        lambda r: r["band"] in ("g", "r") and r["exposure_time"] not in (15.0, 25.0)
    )


def test_fifty_thousand_literal_list_takes_the_fast_path_and_selects_the_rows(engine, resolver):  # noqa: F811
    text = "visit IN (" + ", ".join(str(v) for v in range(50_000)) + ") AND detector = 1"
    masked, lists = expr_parser._mask_long_lists(text)
    assert len(lists) == 1 and len(masked) == len(text)  # lark sees one placeholder, not 50,000 items
    tree = parse_expression(text)
    assert [item.value for item in tree.terms[0].items] == list(range(50_000))
    assert select_ids(engine, resolver, text) == expected_ids(lambda r: r["detector"] == 1)


def test_fast_list_path_builds_the_tree_and_spans_lark_builds():
    text = (
        "visit IN ("
        + ", ".join(f"{v}, {v}..{v + 3}:2, -{v}.5e1, 'it''s {v}', :b{v}" for v in range(300))
        + ")"
    )
    fast, slow = parse_expression(text), parse_expression(text, fast_lists=False)
    assert fast == slow
    assert [item.span for item in fast.items] == [item.span for item in slow.items]


def test_fast_list_path_leaves_strings_and_errors_as_lark_sees_them():
    items = ", ".join(str(v) for v in range(40))
    text = f"band = 'IN ({items})' AND visit IN ({items}, 'x''y', :b, 1..9:2, -2.5e3)"
    tree = parse_expression(text)
    assert tree == parse_expression(text, fast_lists=False)
    assert tree.terms[0].right.value == f"IN ({items})"
    bad = f"visit IN ({items}, 9..1)"
    with pytest.raises(ExpressionValueError) as fast_error:
        parse_expression(bad)
    with pytest.raises(ExpressionValueError) as slow_error:
        parse_expression(bad, fast_lists=False)
    assert str(fast_error.value) == str(slow_error.value)
    assert "9..1" in str(fast_error.value)


def test_error_in_a_huge_list_shows_a_window_around_the_caret():
    text = "visit IN (" + ", ".join(str(v) for v in range(5000)) + ", 99999999999999999999)"
    with pytest.raises(ExpressionValueError) as error:
        parse_expression(text)
    assert "99999999999999999999" in str(error.value)
    assert max(len(line) for line in str(error.value).splitlines()) < 250


# -- limits that remain are ExpressionErrors naming the limit ---------------------------------


def test_too_many_long_ranges_is_an_expression_error_naming_the_limit(resolver, monkeypatch):  # noqa: F811
    monkeypatch.setattr(expr_compiler, "MAX_RANGE_CONDITIONS", 100)
    monkeypatch.setattr(expr_compiler, "_MAX_RANGE_VALUES", 10)
    text = "visit IN (" + ", ".join(f"{v * 10**9}..{v * 10**9 + 10**6}" for v in range(200)) + ")"
    with pytest.raises(ExpressionValueError, match="the limit is 100"):
        compile_expression(text, resolver)


def test_too_many_parameters_is_an_expression_error_naming_the_limit(resolver, monkeypatch):  # noqa: F811
    monkeypatch.setattr(expr_compiler, "MAX_PARAMETERS", 200)
    text = " OR ".join(f"(visit = {v} AND detector = 1)" for v in range(101))
    with pytest.raises(ExpressionValueError, match="the limit is 200"):
        compile_expression(text, resolver)


def test_too_many_in_values_is_an_expression_error_naming_the_limit(resolver, monkeypatch):  # noqa: F811
    monkeypatch.setattr(expr_compiler, "MAX_IN_VALUES", 1000)
    with pytest.raises(ExpressionValueError, match="the limit is 1000"):
        compile_expression("visit IN (:vs)", resolver, {"vs": list(range(1001))})


def test_too_long_text_is_an_expression_error_naming_the_limit(monkeypatch):
    monkeypatch.setattr(expr_parser, "MAX_LENGTH", 100)
    with pytest.raises(ExpressionSyntaxError, match="the limit is 100"):
        parse_expression("visit IN (" + ", ".join("1" for _ in range(60)) + ")")


def test_compiled_depth_limit_is_checked_before_any_sql(resolver, monkeypatch):  # noqa: F811
    monkeypatch.setattr(expr_compiler, "MAX_SQL_DEPTH", 10)
    text = " OR ".join(f"(visit = {v} AND detector = 1)" for v in range(200))
    with pytest.raises(ExpressionValueError, match="the limit is 10"):
        compile_expression(text, resolver)


def test_an_or_with_one_foldable_term_keeps_its_shape():
    # nothing to merge: the comparison compiles as written (and errors say "comparison" things)
    resolver_ = _StubResolver()
    compiler = expr_compiler._Compiler(resolver_, {})
    terms = parse_expression("visit = 1 OR detector = 2").terms
    assert compiler.folded(terms) == list(terms)
    merged = compiler.folded(parse_expression("visit = 1 OR detector = 2 OR 3 = visit").terms)
    assert isinstance(merged[0], InList) and [i.value for i in merged[0].items] == [1, 3]


class _StubResolver:
    def resolve(self, unit, field):
        return sa.column(unit), int

    def identifiers(self):
        return ["visit", "detector"]
