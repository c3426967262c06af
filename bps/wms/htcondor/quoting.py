"""Quoting rules of the HTCondor submit language and of DAG ``VARS`` lines.

Three layers meet in one value: a job argument goes into the new-style
``arguments = "..."`` syntax (arguments with spaces in single quotes, ``'`` and
``"`` doubled), that text goes into a ``VARS`` value (``\\`` and ``"`` escaped with a
backslash), and DAGMan expands it into the submit description. Getting one layer
wrong makes jobs receive different arguments than the plan says, silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_SPECIAL = re.compile(r"[ \t'\"]")


def quote_argument(arg: str) -> str:
    """One argument in the new-style ``arguments`` syntax (without the outer double quotes)."""
    if arg and not _SPECIAL.search(arg):
        return arg
    text = arg.replace('"', '""')
    if text == "" or any(c in text for c in " \t'"):
        return "'" + text.replace("'", "''") + "'"
    return text


def join_arguments(args: Iterable[str]) -> str:
    """The inside of ``arguments = "..."`` for ``args``."""
    return " ".join([quote_argument(a if isinstance(a, str) else str(a)) for a in args])


def split_arguments(text: str) -> list[str]:
    """Inverse of `join_arguments` (new-style syntax), used to check round trips and by the test runner."""
    args: list[str] = []
    current: list[str] = []
    in_arg = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"' and i + 1 < n and text[i + 1] == '"':
            current.append('"')
            in_arg = True
            i += 2
        elif c == "'":
            in_arg = True
            i += 1
            while i < n:
                if text[i] == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        current.append("'")
                        i += 2
                        continue
                    break
                if text[i] == '"' and i + 1 < n and text[i + 1] == '"':
                    current.append('"')
                    i += 2
                    continue
                current.append(text[i])
                i += 1
            else:
                raise ValueError(f"unterminated single quote in arguments: {text!r}")
            i += 1
        elif c in " \t":
            if in_arg:
                args.append("".join(current))
                current, in_arg = [], False
            i += 1
        else:
            current.append(c)
            in_arg = True
            i += 1
    if in_arg:
        args.append("".join(current))
    return args


def environment_value(env: Mapping[str, str]) -> str:
    """The inside of ``environment = "..."``: ``NAME=value`` pairs, values quoted like arguments."""
    for name in env:
        if not name or "=" in name or any(c.isspace() for c in name):
            raise ValueError(f"invalid environment variable name {name!r} in the site config")
    return " ".join(f"{name}={quote_argument(str(value))}" for name, value in env.items())


def vars_value(text: str) -> str:
    """A value for a DAG ``VARS`` line, with its double quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote_vars_value(text: str) -> str:
    """Inverse of `vars_value` (the test runner reads VARS lines with it)."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"VARS value must be in double quotes: {text!r}")
    out: list[str] = []
    i, body = 0, text[1:-1]
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(body[i + 1])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)
