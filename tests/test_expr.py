"""Tests of the data-ID expression language: parsing, errors, analysis and compilation.

Compilation is checked by running the compiled clause against a small real SQLite table,
so each test asserts *which rows* an expression selects, not the SQL text.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import sqlalchemy as sa

from supertask.expr import (
    And,
    BindParam,
    Comparison,
    DictResolver,
    ExpressionError,
    ExpressionSyntaxError,
    ExpressionTypeError,
    ExpressionValueError,
    Identifier,
    IdentifierResolver,
    InList,
    Literal,
    MissingBindError,
    Not,
    Or,
    Range,
    UnknownIdentifierError,
    bind_names,
    compile_expression,
    parse_expression,
    referenced_units,
    split_conjuncts,
    to_text,
)

# --------------------------------------------------------------------------------------------
# A tiny repository: one row per (visit, detector) with a few unit fields.

_METADATA = sa.MetaData()
_ROWS = sa.Table(
    "rows",
    _METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("instrument", sa.String(32), nullable=False),
    sa.Column("visit", sa.BigInteger, nullable=False),
    sa.Column("detector", sa.Integer, nullable=False),
    sa.Column("band", sa.String(8), nullable=False),
    sa.Column("exposure_time", sa.Float, nullable=False),
    sa.Column("observer", sa.String(32), nullable=False),
)
_DATASET = sa.Table(
    "dataset", _METADATA, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String)
)


def _row_values() -> list[dict[str, object]]:
    rows = []
    bands = ["g", "r", "i", "z"]
    for i, visit in enumerate(range(98, 124)):
        for detector in (1, 2, 3):
            rows.append(
                {
                    "id": len(rows),
                    "instrument": "DemoCam" if visit % 5 else "OtherCam",
                    "visit": visit,
                    "detector": detector,
                    "band": bands[i % 4],
                    "exposure_time": 15.0 + 5 * (i % 6),
                    "observer": "O'Brien" if i % 7 == 0 else "Ruiz",
                }
            )
    return rows


def _fill(engine: sa.Engine) -> None:
    _METADATA.create_all(engine)
    with engine.begin() as conn:
        conn.execute(_ROWS.insert(), _row_values())
        conn.execute(_DATASET.insert(), [{"id": 1, "name": "raw"}])


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request) -> Iterator[sa.Engine]:
    """The tiny repository in SQLite and, when a server is configured, in a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
        _fill(engine)
        yield engine
        return
    url = os.environ.get("SUPERTASK_TEST_POSTGRES_URL")
    if not url:
        pytest.skip('PostgreSQL tests need SUPERTASK_TEST_POSTGRES_URL (eval "$(.ci/start-postgres)")')
    schema = f"expr_{uuid.uuid4().hex[:12]}"
    base = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with base.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    engine = base.execution_options(schema_translate_map={None: schema})
    try:
        _fill(engine)
        yield engine
    finally:
        with base.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        base.dispose()


@pytest.fixture(scope="module")
def resolver() -> DictResolver:
    c = _ROWS.c
    return DictResolver(
        {
            "instrument": (c.instrument, str),
            "visit": (c.visit, int),
            "detector": (c.detector, int),
            "band": (c.band, str),
            "exposure.exposure_time": (c.exposure_time, float),
            "visit.observer": (c.observer, str),
        }
    )


def select_ids(
    engine: sa.Engine, resolver: IdentifierResolver, text: str, bind: dict | None = None
) -> set[int]:
    clause = compile_expression(text, resolver, bind)
    with engine.connect() as conn:
        return set(conn.execute(sa.select(_ROWS.c.id).where(clause)).scalars())


def expected_ids(predicate) -> set[int]:
    return {row["id"] for row in _row_values() if predicate(row)}


# --------------------------------------------------------------------------------------------
# Parsing


def test_comparison_parses_to_identifier_operator_literal():
    assert parse_expression("visit >= 100") == Comparison(">=", Identifier("visit"), Literal(100))


def test_unit_field_identifier_keeps_unit_and_field():
    tree = parse_expression("exposure.exposure_time > 30.5")
    assert tree == Comparison(">", Identifier("exposure", "exposure_time"), Literal(30.5))
    assert tree.left.name == "exposure.exposure_time"


def test_literals_have_python_types():
    assert parse_expression("a = -3").right == Literal(-3)
    assert parse_expression("a = 2.5e1").right == Literal(25.0)
    assert parse_expression("a = 'it''s'").right == Literal("it's")
    assert parse_expression('a = "say ""hi"""').right == Literal('say "hi"')


def test_diamond_operator_is_read_as_not_equal():
    assert parse_expression("detector <> 3").op == "!="


def test_keywords_are_case_insensitive():
    upper = parse_expression("NOT a = 1 AND b IN (1) OR c NOT IN (2)")
    mixed = parse_expression("not a = 1 And b in (1) oR c Not In (2)")
    assert upper == mixed


def test_identifiers_that_start_with_keywords_are_identifiers():
    tree = parse_expression("order = 1 AND android = 2 AND notes = 3 AND inner = 4")
    assert [term.left.unit for term in tree.terms] == ["order", "android", "notes", "inner"]


def test_and_binds_tighter_than_or():
    tree = parse_expression("a = 1 OR b = 2 AND c = 3")
    assert isinstance(tree, Or)
    assert isinstance(tree.terms[1], And)


def test_parentheses_override_precedence():
    tree = parse_expression("(a = 1 OR b = 2) AND c = 3")
    assert isinstance(tree, And)
    assert isinstance(tree.terms[0], Or)


def test_nested_ands_are_flattened():
    tree = parse_expression("a = 1 AND (b = 2 AND c = 3) AND d = 4")
    assert isinstance(tree, And) and len(tree.terms) == 4


def test_in_list_with_ranges_strides_and_binds():
    tree = parse_expression("visit IN (100..120, 130..140:5, 7, :more)")
    assert tree == InList(
        Identifier("visit"), (Range(100, 120), Range(130, 140, 5), Literal(7), BindParam("more")), False
    )


def test_not_in_is_a_negated_in_list():
    assert parse_expression("band NOT IN ('g')").negated is True


def test_not_applies_to_the_following_predicate():
    tree = parse_expression("NOT a = 1 AND b = 2")
    assert isinstance(tree, And) and isinstance(tree.terms[0], Not)


def test_nodes_remember_their_position():
    text = "instrument = 'DemoCam' AND visit = 3"
    right_term = parse_expression(text).terms[1]
    assert text[right_term.span.start : right_term.span.end] == "visit = 3"


@pytest.mark.parametrize(
    "text",
    [
        "instrument = 'DemoCam' AND visit IN (100..120) AND detector != 3 AND band IN ('g', 'r')",
        "NOT (a = 1 OR b = 2) AND c.d <= -1.5 AND e NOT IN (1..9:2, :x)",
        "x = 'O''Brien' OR y = 1e+16",
    ],
)
def test_to_text_parses_back_to_an_equal_tree(text):
    tree = parse_expression(text)
    assert parse_expression(to_text(tree)) == tree


def test_to_text_keeps_needed_parentheses_only():
    assert to_text(parse_expression("(a = 1) AND (b = 2 OR c = 3)")) == "a = 1 AND (b = 2 OR c = 3)"


# --------------------------------------------------------------------------------------------
# Syntax and value errors


def error_of(text: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    return info.value


def test_syntax_error_shows_caret_under_the_problem_and_what_was_expected():
    error = error_of("visit = 1 )")
    assert isinstance(error, ExpressionSyntaxError)
    lines = str(error).splitlines()
    assert "expected AND, OR or end of expression" in lines[0]
    assert lines[1].strip() == "visit = 1 )"
    assert lines[2].index("^") == lines[1].index(")")


def test_missing_operand_says_what_may_follow():
    message = str(error_of("visit = "))
    assert "unexpected end of expression" in message
    assert "an identifier" in message and "a quoted string" in message


def test_double_equals_gets_a_hint():
    assert "single '='" in str(error_of("visit == 1"))


def test_statement_separator_is_a_syntax_error_with_a_hint():
    message = str(error_of("visit = 1; DROP TABLE dataset"))
    assert "unexpected character ';'" in message
    assert "Statements and comments" in message


@pytest.mark.parametrize("text", ["visit = 1 -- comment", "visit = 1 /* x */", "visit = 1 # x"])
def test_comments_are_rejected(text):
    assert isinstance(error_of(text), ExpressionSyntaxError)


def test_unterminated_string_is_explained():
    assert "must end with the quote" in str(error_of("band = 'g"))


def test_empty_in_list_is_a_syntax_error():
    assert isinstance(error_of("visit IN ()"), ExpressionSyntaxError)


def test_empty_expression_suggests_passing_none():
    assert "None" in str(error_of("   "))


def test_backwards_range_suggests_the_right_order():
    error = error_of("visit IN (120..100)")
    assert isinstance(error, ExpressionValueError)
    assert "100..120" in str(error)


def test_zero_stride_is_rejected():
    assert isinstance(error_of("visit IN (1..10:0)"), ExpressionValueError)


@pytest.mark.parametrize("text", ["visit = 9223372036854775808", "visit = " + "9" * 5000, "t = 1e999"])
def test_numbers_outside_64_bits_are_rejected(text):
    assert isinstance(error_of(text), ExpressionValueError)


def test_deep_nesting_is_rejected_before_it_can_exhaust_the_stack():
    text = "a = 1"
    for level in range(500):
        text = f"a = 1 {'AND' if level % 2 else 'OR'} ({text})"
    assert "nests more than" in str(error_of(text))
    assert "nests more than" in str(error_of("NOT " * 500 + "a = 1"))


def test_redundant_parentheses_do_not_count_as_nesting():
    assert parse_expression("(" * 500 + "a = 1" + ")" * 500) == Comparison("=", Identifier("a"), Literal(1))


def test_multi_line_expression_errors_name_the_line():
    message = str(error_of("visit = 1\nAND band = g'"))
    assert "line 2: AND band = g'" in message


def test_non_string_input_is_a_type_error():
    with pytest.raises(TypeError, match="must be a str"):
        parse_expression(42)  # type: ignore[arg-type]


def test_errors_are_value_errors_and_survive_pickling():
    error = error_of("visit = ")
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    unknown = UnknownIdentifierError("visti", ["visit"])
    assert str(pickle.loads(pickle.dumps(unknown))) == str(unknown)


# --------------------------------------------------------------------------------------------
# Analysis


def test_referenced_units_includes_units_of_fields():
    tree = parse_expression("visit = 1 AND exposure.exposure_time > 3 OR NOT band IN ('g')")
    assert referenced_units(tree) == {"visit", "exposure", "band"}


def test_bind_names_lists_parameters():
    assert bind_names("visit = :v AND detector IN (:d, 3)") == {"v", "d"}


def test_split_conjuncts_returns_top_level_and_terms_as_text():
    terms = split_conjuncts("instrument = 'DemoCam' AND (visit = 1 OR visit = 2) AND band IN ('g')")
    assert [to_text(term) for term in terms] == [
        "instrument = 'DemoCam'",
        "visit = 1 OR visit = 2",
        "band IN ('g')",
    ]


def test_split_conjuncts_of_a_single_condition_is_that_condition():
    tree = parse_expression("visit = 1 OR visit = 2")
    assert split_conjuncts(tree) == [tree]


# --------------------------------------------------------------------------------------------
# Compilation: the rows selected


def test_example_expression_selects_the_matching_rows(engine, resolver):
    text = "instrument = 'DemoCam' AND visit IN (100..120) AND detector != 3 AND band IN ('g','r')"
    assert select_ids(engine, resolver, text) == expected_ids(
        lambda r: (
            r["instrument"] == "DemoCam"
            and 100 <= r["visit"] <= 120
            and r["detector"] != 3
            and r["band"] in ("g", "r")
        )
    )


@pytest.mark.parametrize(
    ("text", "predicate"),
    [
        ("visit = 100", lambda r: r["visit"] == 100),
        ("visit != 100", lambda r: r["visit"] != 100),
        ("visit < 100", lambda r: r["visit"] < 100),
        ("visit <= 100", lambda r: r["visit"] <= 100),
        ("visit > 120", lambda r: r["visit"] > 120),
        ("visit >= 120", lambda r: r["visit"] >= 120),
        ("100 > visit", lambda r: r["visit"] < 100),
        ("visit > 99.5", lambda r: r["visit"] > 99.5),
        ("exposure.exposure_time > 30", lambda r: r["exposure_time"] > 30),
        ("band < 'i'", lambda r: r["band"] < "i"),
        ("visit.observer = 'O''Brien'", lambda r: r["observer"] == "O'Brien"),
        ("visit = detector", lambda r: r["visit"] == r["detector"]),
    ],
)
def test_comparisons_select_the_rows_python_would(engine, resolver, text, predicate):
    selected = select_ids(engine, resolver, text)
    assert selected == expected_ids(predicate)


def test_strided_range_selects_every_nth_value(engine, resolver):
    assert select_ids(engine, resolver, "visit IN (100..120:5)") == expected_ids(
        lambda r: r["visit"] in (100, 105, 110, 115, 120)
    )


def test_long_strided_range_uses_modulo_and_selects_the_same(engine, resolver):
    # 0..10**6:5 has too many values to expand; the modulo form must agree.
    assert select_ids(engine, resolver, "visit IN (0..1000000:5)") == expected_ids(
        lambda r: r["visit"] % 5 == 0
    )


def test_not_in_with_range_and_values(engine, resolver):
    assert select_ids(engine, resolver, "visit NOT IN (99..110, 115) AND detector = 1") == expected_ids(
        lambda r: not (99 <= r["visit"] <= 110 or r["visit"] == 115) and r["detector"] == 1
    )


def test_not_and_or_combine(engine, resolver):
    text = "NOT (band = 'g' OR band = 'r') AND (detector = 1 OR visit = 100)"
    assert select_ids(engine, resolver, text) == expected_ids(
        lambda r: r["band"] not in ("g", "r") and (r["detector"] == 1 or r["visit"] == 100)
    )


def test_bind_values_scalar_and_lists(engine, resolver):
    bind = {"v": 101, "dets": [1, 3], "bands": ("g",)}
    text = "visit >= :v AND detector IN (:dets) AND band NOT IN (:bands)"
    assert select_ids(engine, resolver, text, bind) == expected_ids(
        lambda r: r["visit"] >= 101 and r["detector"] in (1, 3) and r["band"] != "g"
    )


def test_numpy_integers_are_accepted_as_bind_values(engine, resolver):
    assert select_ids(engine, resolver, "visit = :v", {"v": np.int64(100)}) == expected_ids(
        lambda r: r["visit"] == 100
    )


def test_empty_bind_list_selects_nothing_and_its_negation_everything(engine, resolver):
    assert select_ids(engine, resolver, "visit IN (:vs)", {"vs": []}) == set()
    assert select_ids(engine, resolver, "visit NOT IN (:vs)", {"vs": []}) == expected_ids(lambda r: True)


def test_injection_attempts_in_strings_are_plain_values(engine, resolver):
    text = "band = 'g''; DROP TABLE dataset; --' OR instrument = '\" OR 1=1'"
    assert select_ids(engine, resolver, text) == set()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(_DATASET)).scalar_one() == 1


def test_user_values_never_appear_in_the_sql_text(resolver):
    clause = compile_expression("band = 'zzz_marker' AND visit IN (4242, 5000..5010)", resolver)
    sql = str(clause.compile(dialect=sa.dialects.sqlite.dialect()))
    assert "zzz_marker" not in sql and "4242" not in sql and "5010" not in sql


def test_compiling_a_conjunct_alone_works_for_empty_result_explanations(engine, resolver):
    terms = split_conjuncts("instrument = 'DemoCam' AND band = 'y'")
    counts = [len(select_ids(engine, resolver, to_text(term))) for term in terms]
    assert counts[0] > 0 and counts[1] == 0
    clause = compile_expression(terms[1], resolver)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(clause)).scalar_one() == 0


# --------------------------------------------------------------------------------------------
# Compilation errors


def compile_error(resolver, text: str, bind: dict | None = None) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text, resolver, bind)
    return info.value


def test_unknown_identifier_suggests_the_closest_and_lists_all(resolver):
    error = compile_error(resolver, "instrument = 'DemoCam' AND visti = 3")
    assert isinstance(error, UnknownIdentifierError)
    assert error.suggestion == "visit"
    message = str(error)
    assert "Did you mean 'visit'?" in message and "exposure.exposure_time" in message
    caret_line = message.splitlines()[2]
    assert caret_line.index("^") == message.splitlines()[1].index("visti")


def test_unquoted_string_value_is_suggested_to_be_quoted(resolver):
    error = compile_error(resolver, "band = g")
    assert isinstance(error, UnknownIdentifierError)
    assert "quote it: 'g'" in str(error)


def test_unknown_field_of_a_known_unit_is_unknown(resolver):
    error = compile_error(resolver, "exposure.exposure_tme > 3")
    assert isinstance(error, UnknownIdentifierError)
    assert error.suggestion == "exposure.exposure_time"


@pytest.mark.parametrize(
    ("text", "fix"),
    [
        ("band = 3", "quote the value, '3'"),
        ("visit = 'a'", "without quotes"),
        ("visit IN (1, 'x')", "without quotes"),
        ("exposure.exposure_time IN (1..3)", "Use comparisons"),
        ("band = visit", None),
        ("1 = 2", "one side must be an identifier"),
    ],
)
def test_type_mismatches_fail_at_compile_time(resolver, text, fix):
    error = compile_error(resolver, text)
    assert isinstance(error, ExpressionTypeError)
    if fix:
        assert fix in str(error)


def test_type_mismatch_of_a_bind_value_names_the_parameter(resolver):
    error = compile_error(resolver, "visit = :v", {"v": "100"})
    assert isinstance(error, ExpressionTypeError) and ":v" in str(error)


def test_missing_bind_value_names_it_and_the_given_ones(resolver):
    error = compile_error(resolver, "visit = :visit_id", {"other": 1})
    assert isinstance(error, MissingBindError)
    assert error.name == "visit_id"
    assert ":visit_id" in str(error) and "other" in str(error)


@pytest.mark.parametrize("value", [None, True, {"a": 1}, float("nan"), 2**64, "a\x00b"])
def test_unusable_bind_values_are_rejected(resolver, value):
    field = "band" if isinstance(value, str) else "visit"
    assert isinstance(compile_error(resolver, f"{field} = :v", {"v": value}), ExpressionValueError)


def test_a_list_bind_in_a_comparison_suggests_in(resolver):
    assert "IN (:v)" in str(compile_error(resolver, "visit = :v", {"v": [1, 2]}))


def test_hand_built_bad_range_is_rejected(resolver):
    tree = InList(Identifier("visit"), (Range(5, 1),))
    with pytest.raises(ExpressionValueError):
        compile_expression(tree, resolver)


@pytest.mark.parametrize(
    "tree",
    [
        Comparison("=", Identifier("visit"), Not(Identifier("visit"))),
        InList(Identifier("visit"), (Identifier("detector"),)),
        InList(Literal(3), (Literal(3),)),
        Comparison("~", Identifier("visit"), Literal(1)),
        Identifier("visit"),
    ],
)
def test_malformed_hand_built_trees_are_expression_errors(resolver, tree):
    with pytest.raises(ExpressionError):
        compile_expression(tree, resolver)


def test_errors_from_hand_built_trees_have_no_caret_but_a_message(resolver):
    error = compile_error_tree(resolver, Comparison("=", Identifier("bnd"), Literal("g")))
    assert str(error).startswith("Unknown identifier 'bnd'.") and "^" not in str(error)


def compile_error_tree(resolver, tree) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        compile_expression(tree, resolver)
    return info.value


def test_resolver_raising_key_error_gives_unknown_identifier():
    class MappingResolver:
        def resolve(self, unit, field):
            return {"visit": (_ROWS.c.visit, int)}[unit]

        def identifiers(self):
            return ["visit"]

    assert isinstance(MappingResolver(), IdentifierResolver)
    error = compile_error(MappingResolver(), "vist = 1")
    assert isinstance(error, UnknownIdentifierError) and error.suggestion == "visit"


def test_a_plain_function_can_serve_as_resolver(engine):
    def resolve(unit, field):
        if (unit, field) == ("visit", None):
            return _ROWS.c.visit, int
        raise UnknownIdentifierError(unit, ["visit"])

    assert select_ids(engine, resolve, "visit = 100") == expected_ids(lambda r: r["visit"] == 100)
    error = compile_error(resolve, "vist = 1")
    assert isinstance(error, UnknownIdentifierError) and error.span is not None


def test_dict_resolver_rejects_bad_declarations():
    with pytest.raises(ValueError, match="int, float or str"):
        DictResolver({"visit": (_ROWS.c.visit, bytes)})
    with pytest.raises(ValueError, match="not an identifier"):
        DictResolver({"visit id": (_ROWS.c.visit, int)})


# --------------------------------------------------------------------------------------------
# Import cost and parser caching


def test_importing_the_package_loads_neither_lark_nor_sqlalchemy():
    code = "import sys, supertask.expr; print('lark' in sys.modules, 'sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_the_lark_parser_is_built_once():
    from supertask.expr import parser

    parse_expression("a = 1")
    assert parser._parser() is parser._parser()
    assert parser._parser.cache_info().currsize == 1


# --------------------------------------------------------------------------------------------
# The user documentation's examples


def test_examples_in_the_documentation_parse():
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "expressions.md").read_text()
    blocks = doc.split("```text\n")[1:]
    examples = [
        line.split(" -- ")[0].strip()
        for block in blocks
        for line in block.split("```")[0].splitlines()
        if line.strip()
        and not block.startswith(("Syntax error", "Unknown", "No value", "The range"))
        and " is a" not in block.splitlines()[0]
    ]
    assert len(examples) >= 8
    for example in examples:
        parse_expression(example)


def test_error_messages_in_the_documentation_are_the_real_ones():
    from pathlib import Path

    c = _ROWS.c
    doc_resolver = DictResolver(
        {
            "band": (c.band, str),
            "exposure.exposure_time": (c.exposure_time, float),
            "instrument": (c.instrument, str),
            "visit": (c.visit, int),
        }
    )
    doc = (Path(__file__).parent.parent / "docs" / "expressions.md").read_text()
    shown = [block.split("```")[0].rstrip("\n") for block in doc.split("```text\n")[1:]]
    messages = [b for b in shown if len(b.splitlines()) > 1 and b.splitlines()[1].startswith("    ")]
    assert len(messages) >= 6
    for message in messages:
        expression = message.splitlines()[1][4:]
        with pytest.raises(ExpressionError) as info:
            compile_expression(expression, doc_resolver, {"vs": 1})
        assert str(info.value) == message
