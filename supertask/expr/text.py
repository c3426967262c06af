"""Rendering a syntax tree back to expression text.

The registry uses this to explain an empty result term by term ("the term
``band IN ('z')`` removed every row"); the text is canonical (upper-case keywords,
single-quoted strings, only the parentheses precedence needs) and parses back to an
equal tree.
"""

from __future__ import annotations

from .nodes import And, BindParam, Comparison, Identifier, InList, Literal, Node, Not, Or, Range

__all__ = ["to_text"]

# Binding strength: a child binding more loosely than its parent needs parentheses.
_OR, _AND, _NOT, _PREDICATE = 1, 2, 3, 4


def to_text(node: Node) -> str:
    """Return the canonical expression text of ``node``.

    Parameters
    ----------
    node : `Node`
        Any node of a tree from `parse_expression` or built by hand.

    Returns
    -------
    text : `str`
        Text that `parse_expression` turns back into a tree equal to ``node`` (for trees
        as the parser builds them; a hand-built ``And`` directly inside an ``And`` keeps
        its parentheses and parses back flattened).
    """
    if isinstance(node, Or):
        return " OR ".join(_wrapped(term, _OR) for term in node.terms)
    if isinstance(node, And):
        return " AND ".join(_wrapped(term, _AND) for term in node.terms)
    if isinstance(node, Not):
        return "NOT " + _wrapped(node.operand, _NOT)
    if isinstance(node, Comparison):
        return f"{to_text(node.left)} {node.op} {to_text(node.right)}"
    if isinstance(node, InList):
        keyword = "NOT IN" if node.negated else "IN"
        return f"{to_text(node.operand)} {keyword} ({', '.join(to_text(item) for item in node.items)})"
    if isinstance(node, Identifier):
        return node.name
    if isinstance(node, BindParam):
        return f":{node.name}"
    if isinstance(node, Range):
        text = f"{node.start}..{node.stop}"
        return text if node.stride == 1 else f"{text}:{node.stride}"
    if isinstance(node, Literal):
        return _literal(node.value)
    raise TypeError(f"Cannot render {type(node).__name__} as expression text.")


def _strength(node: Node) -> int:
    if isinstance(node, Or):
        return _OR
    if isinstance(node, And):
        return _AND
    if isinstance(node, Not):
        return _NOT
    return _PREDICATE


def _wrapped(node: Node, parent: int) -> str:
    # Equal strength is parenthesised too: an AND directly inside an AND only happens in
    # hand-built trees, and keeping its grouping makes the text show the tree faithfully.
    text = to_text(node)
    return f"({text})" if _strength(node) <= parent and _strength(node) != _NOT else text


def _literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        raise TypeError("Booleans are not expression literals.")
    if isinstance(value, float):
        text = repr(value)
        # repr gives '1e+16' or '1.5'; the grammar needs digits on both sides of a '.'.
        return text if any(c in text for c in ".e") else text + ".0"
    return str(value)
