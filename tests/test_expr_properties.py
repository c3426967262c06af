"""Property-based tests of the expression language (hypothesis).

Three kinds of input are generated: arbitrary text, soups of the language's own tokens
(plus SQL-injection fragments), and grammar-shaped trees with random identifiers,
literals, bind parameters and nesting. For every input, parsing and compiling either
succeed or raise an `ExpressionError` - never anything else - and running the compiled
query against a real SQLite database leaves the database byte-for-byte unchanged. For
compiled trees the rows SQLite selects must equal those a Python evaluation of the tree
selects, and a tree printed with `to_text` must parse back to itself.
"""

from __future__ import annotations

import functools
import math
import operator
import os
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supertask.expr import (
    And,
    BindParam,
    Comparison,
    DictResolver,
    ExpressionError,
    Identifier,
    InList,
    Literal,
    Node,
    Not,
    Or,
    Range,
    compile_expression,
    parse_expression,
    to_text,
    walk,
)

SETTINGS = settings(
    max_examples=1500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# --------------------------------------------------------------------------------------------
# The database: rows of unit values, plus a table an injection would like to drop.

_METADATA = sa.MetaData()
_ROWS = sa.Table(
    "rows",
    _METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("visit", sa.BigInteger, nullable=False),
    sa.Column("detector", sa.Integer, nullable=False),
    sa.Column("band", sa.String(16), nullable=False),
    sa.Column("exposure_time", sa.Float, nullable=False),
)
_DATASET = sa.Table(
    "dataset", _METADATA, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String)
)
ROWS = [
    {
        "id": i,
        "visit": visit,
        "detector": i % 4,
        "band": ["g", "r", "i", "z", "O'Brien", "é", ""][i % 7],
        "exposure_time": [15.0, 30.0, 30.5, -2.25][i % 4],
    }
    for i, visit in enumerate([-5, 0, 1, 2, 3, 7, 10, 99, 100, 101, 105, 120, 2**40, -(2**40), 2**62, 17])
]
COLUMNS = {
    "visit": (_ROWS.c.visit, int, "visit"),
    "detector": (_ROWS.c.detector, int, "detector"),
    "band": (_ROWS.c.band, str, "band"),
    "exposure.exposure_time": (_ROWS.c.exposure_time, float, "exposure_time"),
}
RESOLVER = DictResolver({name: (column, pytype) for name, (column, pytype, _) in COLUMNS.items()})


@functools.cache
def _engine() -> sa.Engine:
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
    _METADATA.create_all(engine)
    with engine.begin() as conn:
        conn.execute(_ROWS.insert(), ROWS)
        conn.execute(_DATASET.insert(), [{"id": 1, "name": "raw"}, {"id": 2, "name": "calexp"}])
    return engine


def _dump() -> list[str]:
    raw = _engine().raw_connection()
    try:
        return list(raw.driver_connection.iterdump())
    finally:
        raw.close()


ORIGINAL_DUMP: list[str] = []


def run_and_check_unchanged(text_or_tree: str | Node, bind: dict[str, Any]) -> set[int] | None:
    """Parse + compile + run; return the selected ids, or None after an `ExpressionError`.

    Any other exception fails the test; so does any change to the database.
    """
    if not ORIGINAL_DUMP:
        ORIGINAL_DUMP.extend(_dump())
    try:
        clause = compile_expression(text_or_tree, RESOLVER, bind)
    except ExpressionError:
        return None
    with _engine().connect() as conn:
        ids = set(conn.execute(sa.select(_ROWS.c.id).where(clause)).scalars())
    assert _dump() == ORIGINAL_DUMP
    return ids


# --------------------------------------------------------------------------------------------
# A reference evaluation of a tree over the Python rows (SQL semantics without NULLs).

_OPS = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def evaluate(node: Node, row: dict[str, Any], bind: dict[str, Any]) -> bool:
    if isinstance(node, And):
        return all(evaluate(term, row, bind) for term in node.terms)
    if isinstance(node, Or):
        return any(evaluate(term, row, bind) for term in node.terms)
    if isinstance(node, Not):
        return not evaluate(node.operand, row, bind)
    if isinstance(node, Comparison):
        return _OPS[node.op](value_of(node.left, row, bind), value_of(node.right, row, bind))
    if isinstance(node, InList):
        value = value_of(node.operand, row, bind)
        found = False
        for item in node.items:
            if isinstance(item, Range):
                found |= item.start <= value <= item.stop and (value - item.start) % item.stride == 0
            elif isinstance(item, BindParam) and isinstance(bind[item.name], list):
                found |= value in bind[item.name]
            else:
                found |= value == value_of(item, row, bind)
        return found != node.negated
    raise AssertionError(f"unexpected node {node!r}")


def value_of(node: Node, row: dict[str, Any], bind: dict[str, Any]) -> Any:
    if isinstance(node, Identifier):
        return row[COLUMNS[node.name][2]]
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, BindParam):
        return bind[node.name]
    raise AssertionError(f"unexpected operand {node!r}")


# --------------------------------------------------------------------------------------------
# Strategies

KEYWORDS = {"and", "or", "not", "in"}
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s.lower() not in KEYWORDS
)
identifiers = st.one_of(
    st.sampled_from([Identifier("visit"), Identifier("detector"), Identifier("band")]),
    st.just(Identifier("exposure", "exposure_time")),
    st.builds(Identifier, names, st.none() | names),
)
small_ints = st.integers(-130, 130)
ints = st.one_of(small_ints, st.integers(-(2**63), 2**63 - 1))
floats = st.floats(allow_nan=False, allow_infinity=False)
strings = st.one_of(
    st.sampled_from(["g", "r", "O'Brien", "é", "", "'; DROP TABLE dataset; --"]), st.text(max_size=8)
)
literals = st.builds(Literal, st.one_of(ints, floats, strings))
BIND_NAMES = ["a", "b", "c"]
binds = st.builds(BindParam, st.sampled_from([*BIND_NAMES, "missing"]))
ranges = st.one_of(
    st.builds(
        lambda start, length, stride: Range(start, start + length, stride),
        st.integers(-200, 200) | st.integers(-(10**12), 10**12),
        st.integers(0, 50) | st.integers(0, 10**7),
        st.integers(1, 7),
    ),
    # ranges reaching the ends of 64 bits, where ``column - start`` would overflow
    st.builds(
        lambda start, stop, stride: Range(min(start, stop), max(start, stop), stride),
        st.integers(-(2**63), 2**63 - 1),
        st.integers(-(2**63), 2**63 - 1),
        st.integers(1, 7) | st.integers(1, 2**63 - 1),
    ),
)
operands = st.one_of(identifiers, literals, binds)
comparisons = st.builds(Comparison, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), operands, operands)
in_lists = st.builds(
    InList,
    identifiers,
    st.lists(st.one_of(literals, binds, ranges), min_size=1, max_size=4).map(tuple),
    st.booleans(),
)


def _flat(kind: type[And] | type[Or], terms: list[Node]) -> Node:
    flat: list[Node] = []
    for term in terms:
        flat.extend(term.terms if isinstance(term, kind) else (term,))
    return kind(tuple(flat))


# Well-typed leaves (a known column with a value of its type) so that most generated trees
# compile and their results can be compared; wild leaves exercise every error path.
TYPED_BINDS = {int: ("i", "li"), float: ("f", "lf"), str: ("s", "ls")}
_COLUMN_VALUES = {
    int: st.one_of(st.sampled_from(sorted({row["visit"] for row in ROWS})), st.integers(-3, 130), ints),
    float: st.one_of(st.sampled_from([15.0, 30.0, 30.5, -2.25]), st.integers(-3, 40), floats),
    str: st.one_of(st.sampled_from(sorted({row["band"] for row in ROWS})), st.text(max_size=3)),
}


@st.composite
def typed_leaves(draw: st.DrawFn) -> Node:
    name = draw(st.sampled_from(sorted(COLUMNS)))
    pytype = COLUMNS[name][1]
    unit, _, field = name.partition(".")
    identifier = Identifier(unit, field or None)
    scalar_bind, list_bind = TYPED_BINDS[pytype]
    value = st.one_of(st.builds(Literal, _COLUMN_VALUES[pytype]), st.just(BindParam(scalar_bind)))
    if draw(st.booleans()):
        left, right = identifier, draw(value)
        if draw(st.booleans()):
            left, right = right, left
        return Comparison(draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="])), left, right)
    items = [value, st.just(BindParam(list_bind))] + ([ranges] if pytype is int else [])
    chosen = draw(st.lists(st.one_of(*items), min_size=1, max_size=4))
    return InList(identifier, tuple(chosen), draw(st.booleans()))


trees = st.recursive(
    st.one_of(typed_leaves(), typed_leaves(), typed_leaves(), comparisons, in_lists),
    lambda children: st.one_of(
        st.builds(Not, children),
        st.lists(children, min_size=2, max_size=3).map(functools.partial(_flat, And)),
        st.lists(children, min_size=2, max_size=3).map(functools.partial(_flat, Or)),
    ),
    max_leaves=8,
)
bind_values = st.one_of(ints, floats, strings, st.lists(st.one_of(small_ints, strings), max_size=4))
bind_maps = st.builds(
    lambda typed, wild: {**typed, **wild},
    st.fixed_dictionaries(
        {
            "i": _COLUMN_VALUES[int],
            "f": _COLUMN_VALUES[float],
            "s": _COLUMN_VALUES[str],
            "li": st.lists(_COLUMN_VALUES[int], max_size=4),
            "lf": st.lists(_COLUMN_VALUES[float], max_size=4),
            "ls": st.lists(_COLUMN_VALUES[str], max_size=4),
        }
    ),
    st.dictionaries(st.sampled_from([*BIND_NAMES, "i", "s"]), bind_values, max_size=2),
)

TOKENS = [
    "visit", "detector", "band", "exposure.exposure_time", "exposure.", "nosuch", ".x",
    "AND", "or", "Not", "IN", "=", "!=", "<>", "<", "<=", ">", ">=", "==", "(", ")", ",", "..", ":", ":a",
    ":missing", "100", "-3", "1..5", "1..5:2", "3..1", "0.5", "1e999", "99999999999999999999", "'g'", "'",
    '"', "'O''Brien'", ";", "--", "/*", "*/", "DROP", "TABLE", "dataset", "DELETE FROM rows", "1=1", "\\", "\n",
]  # fmt: skip
token_soup = st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join)
glued_soup = st.lists(st.sampled_from(TOKENS), max_size=12).map("".join)

# --------------------------------------------------------------------------------------------
# Properties


@SETTINGS
@given(text=st.text(max_size=60), bind=bind_maps)
def test_arbitrary_text_raises_only_expression_errors_and_changes_nothing(text, bind):
    run_and_check_unchanged(text, bind)


@SETTINGS
@given(text=st.one_of(token_soup, glued_soup), bind=bind_maps)
def test_token_soups_raise_only_expression_errors_and_change_nothing(text, bind):
    run_and_check_unchanged(text, bind)


@settings(SETTINGS, max_examples=1000)
@given(tree=trees, bind=bind_maps)
def test_generated_expressions_print_parse_and_select_like_python_evaluation(tree, bind):
    text = to_text(tree)
    parsed = parse_expression(text)
    assert parsed == tree, text
    selected = run_and_check_unchanged(parsed, bind)
    if selected is None:
        return
    expected = {row["id"] for row in ROWS if evaluate(parsed, row, bind)}
    assert selected == expected, text


@settings(max_examples=300, deadline=None, database=None)
@given(value=floats)
def test_float_literals_round_trip_exactly(value):
    parsed = parse_expression(to_text(Comparison("=", Identifier("x"), Literal(value)))).right.value
    assert parsed == value and math.copysign(1, parsed) == math.copysign(1, value)


# --------------------------------------------------------------------------------------------
# Huge, deep and hostile inputs against a real registry file


@functools.cache
def _registry_file() -> tuple[Any, str]:
    import tempfile
    from pathlib import Path

    from conftest_repo import populate

    from supertask.repo.registry import Registry

    path = Path(tempfile.mkdtemp(prefix="expr-fuzz-")) / "registry.sqlite3"
    registry = Registry.create(f"sqlite:///{path}")
    populate(registry, n_visits=12)
    registry.close()
    registry = Registry(f"sqlite:///{path}")
    return registry, _registry_digest(registry)


def _registry_digest(registry: Any) -> str:
    """Digest of the database file and of its content as a reader sees it (WAL included).

    In WAL mode a write lands in the ``-wal`` file first and reaches the database file
    only at a checkpoint, so the file's bytes alone could miss one; the dump cannot.
    """
    import hashlib
    import sqlite3

    path = registry.engine.url.database
    digest = hashlib.sha256(open(path, "rb").read())
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for line in reader.iterdump():
            digest.update(line.encode())
    finally:
        reader.close()
    return digest.hexdigest()


ITEMS = st.one_of(
    small_ints.map(str),
    ints.map(str),
    st.builds(
        lambda a, n, s: f"{a}..{a + n}:{s}",
        st.integers(-(2**63), 2**62),
        st.integers(0, 2**62),
        st.integers(1, 9),
    ),
    st.text(max_size=6).map(lambda t: "'" + t.replace("'", "''") + "'"),
    st.sampled_from([":a", ":big", "1e999", "99999999999999999999", "'; DROP TABLE dataset; --", "NULL"]),
)


@st.composite
def huge_inputs(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["in", "or", "deep", "and"]))
    if kind == "in":
        items = draw(st.lists(ITEMS, min_size=1, max_size=40))
        repeat = draw(st.sampled_from([1, 1, 50, 2000]))
        return f"visit {draw(st.sampled_from(['IN', 'NOT IN']))} ({', '.join(items * repeat)})"
    if kind == "or":
        n = draw(st.sampled_from([2, 999, 1001, 3000]))
        unit = draw(st.sampled_from(["visit", "detector", "band", "visit.exposure_time"]))
        value = draw(ITEMS)
        return " OR ".join(
            f"{unit} = {value}" if i % 2 else f"({unit} = {i} AND detector != {i})" for i in range(n)
        )
    if kind == "and":
        n = draw(st.sampled_from([2, 1001, 3000]))
        return " AND ".join(f"visit != {i}" for i in range(n))
    depth = draw(st.integers(1, 80))
    core = draw(st.sampled_from(["visit = 1", "band = 'é''x'", "detector IN (1..3)"]))
    return "NOT (" * depth + core + ")" * depth


HUGE_SETTINGS = settings(
    max_examples=int(os.environ.get("SUPERTASK_FUZZ_EXAMPLES", "40")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@HUGE_SETTINGS
@given(
    text=st.one_of(huge_inputs(), token_soup, st.text(max_size=40)),
    bind=st.fixed_dictionaries(
        {
            "a": st.one_of(ints, strings, floats),
            "big": st.one_of(st.just(range(-(2**63), 2**63 - 1, 3)), st.lists(ints, max_size=3000)),
        }
    ),
)
def test_huge_deep_and_hostile_queries_give_rows_or_expression_errors_and_leave_the_registry_file_alone(
    text, bind
):
    registry, digest = _registry_file()
    try:
        rows = registry.queryDataIds(["visit"], where=text, bind=bind)
    except ExpressionError:
        pass
    else:
        assert all(set(row) == {"instrument", "visit"} for row in rows)
    assert _registry_digest(registry) == digest


LIST_ITEMS = st.one_of(
    ITEMS.filter(lambda item: item not in ("NULL", "'; DROP TABLE dataset; --")),
    st.sampled_from(["1 .. 5", "1..5 : 2", "3..1", "1..5:0", "+7", "-0", "1.5e3", "'a''b'", '"x""y"', ":_b"]),
)
ODD_ITEMS = st.sampled_from(
    ["visit", "(", ")", "..", "'", "1.", ".5", "1..", ":", ",", "IN (1, 2)", "\n", "1e"]
)


@st.composite
def list_items(draw: st.DrawFn) -> list[str]:
    """30-45 items the fast path reads, sometimes with one it must leave to lark."""
    items = draw(st.lists(LIST_ITEMS, min_size=30, max_size=45))
    if draw(st.integers(0, 3)) == 0:
        items.insert(draw(st.integers(0, len(items))), draw(ODD_ITEMS))
    return items


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=list_items(),
    separators=st.lists(st.sampled_from([", ", ",", " ,\n ", ",\t"]), min_size=46, max_size=46),
    prefix=st.sampled_from(["visit IN (", "visit not in(", "band = 'IN (' AND visit IN (", "NOT visit IN ("]),
    suffix=st.sampled_from([")", ") AND detector = 1", ") OR", "", "))"]),
)
def test_the_fast_list_path_parses_exactly_like_lark(items, separators, prefix, suffix):
    body = "".join(item + separators[i] for i, item in enumerate(items[:-1])) + items[-1]
    text = prefix + body + suffix
    outcomes = []
    for fast in (True, False):
        try:
            tree = parse_expression(text, fast_lists=fast)
        except ExpressionError as error:
            outcomes.append(("error", type(error).__name__, str(error)))
        else:
            spans = [(type(n).__name__, n.span.start, n.span.end) for n in walk(tree) if n.span is not None]
            outcomes.append(("tree", tree, spans))
    assert outcomes[0] == outcomes[1], text
