"""The LALR grammar of the data-ID expression language (lark syntax).

It is a Python string rather than a ``.lark`` file because the package data shipped by
``pyproject.toml`` does not include ``*.lark`` files. Keywords are case-insensitive; a
keyword can therefore not be used as an identifier, which no unit name needs.
Precedence, loosest first: ``OR``, ``AND``, ``NOT``, then comparisons and ``IN``.
"""

from __future__ import annotations

__all__ = ["GRAMMAR", "TERMINAL_DESCRIPTIONS"]

GRAMMAR = r"""
?start: or_expr

?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: _NOT not_expr                              -> not_
         | predicate
?predicate: operand COMP_OP operand                   -> comparison
          | operand _IN _LPAR in_items _RPAR          -> in_
          | operand _NOT _IN _LPAR in_items _RPAR     -> not_in
          | _LPAR or_expr _RPAR

in_items: in_item (_COMMA in_item)*
?in_item: INT _DOTDOT INT (_COLON INT)?               -> range_
        | literal
        | BIND                                        -> bind

?operand: IDENT                                       -> identifier
        | literal
        | BIND                                        -> bind

?literal: INT                                         -> int_
        | FLOAT                                       -> float_
        | STRING                                      -> string

COMP_OP: "=" | "!=" | "<>" | "<=" | ">=" | "<" | ">"
_AND: "AND"i
_OR: "OR"i
_NOT: "NOT"i
_IN: "IN"i
_LPAR: "("
_RPAR: ")"
_COMMA: ","
_DOTDOT: ".."
_COLON: ":"
IDENT: /[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?/
BIND: /:[A-Za-z_][A-Za-z0-9_]*/
INT: /[+-]?[0-9]+/
FLOAT: /[+-]?([0-9]+\.[0-9]+([eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)/
STRING: /'(?:[^']|'')*'/ | /"(?:[^"]|"")*"/

%ignore /[ \t\r\n]+/
"""

TERMINAL_DESCRIPTIONS = {
    "IDENT": "an identifier",
    "BIND": "a :bind parameter",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a quoted string",
    "COMP_OP": "a comparison operator (=, !=, <, <=, >, >=)",
    "_AND": "AND",
    "_OR": "OR",
    "_NOT": "NOT",
    "_IN": "IN",
    "_LPAR": "'('",
    "_RPAR": "')'",
    "_COMMA": "','",
    "_DOTDOT": "'..'",
    "_COLON": "':'",
    "$END": "end of expression",
}
"""How parse errors name what was expected instead of lark's terminal names."""
