"""Text-level checks run before a filter's source is parsed.

They keep pathological input (huge, binary, deeply nested, disguised with
invisible or direction-changing characters) away from the parser, which runs
in the service process, and give a clear message instead of a crash.
"""
from __future__ import annotations

import io
import tokenize
import unicodedata

from .errors import Problem

MAX_SOURCE_CHARS = 100_000
MAX_LINES = 3_000
MAX_LINE_CHARS = 2_000
MAX_TOKENS = 40_000
MAX_BRACKET_DEPTH = 40
MAX_INDENT_DEPTH = 20

_ALLOWED_CONTROLS = frozenset("\t\n\r")
_OPENING, _CLOSING = frozenset("([{"), frozenset(")]}")
# Visible-looking but empty letters, used to hide identifiers.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
# Unicode categories that never belong in source: controls, format characters
# (bidirectional overrides, zero-width joiners...), surrogates, private use,
# unassigned, line and paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def lint_source(source: object) -> list[Problem]:
    """Problems that make the source unsafe or unreasonable to parse at all."""
    if not isinstance(source, str):
        return [Problem(f"the filter source must be text, not {type(source).__name__}")]
    if len(source) > MAX_SOURCE_CHARS:
        return [Problem(f"the filter is {len(source)} characters long; the limit is "
                        f"{MAX_SOURCE_CHARS}")]
    lines = source.splitlines()
    if len(lines) > MAX_LINES:
        return [Problem(f"the filter has {len(lines)} lines; the limit is {MAX_LINES}")]
    problems = _character_problems(source)
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_CHARS:
            problems.append(Problem(f"line is {len(line)} characters long; the limit is "
                                    f"{MAX_LINE_CHARS}", number))
    if problems:
        return problems
    return _token_problems(source)


def _character_problems(source: str) -> list[Problem]:
    problems: list[Problem] = []
    line, column = 1, 0
    for char in source:
        column += 1
        if char == "\n":
            line, column = line + 1, 0
            continue
        if char in _ALLOWED_CONTROLS:
            continue
        if char in _INVISIBLE_LETTERS or unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            name = unicodedata.name(char, "unnamed character")
            problems.append(Problem(
                f"invisible or control character U+{ord(char):04X} ({name}) is not "
                "allowed: it can make code read differently from how it runs", line, column))
            if len(problems) >= 10:
                break
    return problems


def _token_problems(source: str) -> list[Problem]:
    """Bracket and indentation depth, token count, and ASCII-only identifiers."""
    problems: list[Problem] = []
    depth = indent = count = 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            count += 1
            if count > MAX_TOKENS:
                return [Problem(f"the filter has more than {MAX_TOKENS} tokens; "
                                "split it into smaller functions")]
            kind, text, (row, col) = token.type, token.string, token.start
            if kind == tokenize.OP and text in _OPENING:
                depth += 1
                if depth > MAX_BRACKET_DEPTH:
                    return [Problem(f"brackets are nested more than {MAX_BRACKET_DEPTH} "
                                    "deep; split the expression", row, col + 1)]
            elif kind == tokenize.OP and text in _CLOSING:
                depth = max(0, depth - 1)
            elif kind == tokenize.INDENT:
                indent += 1
                if indent > MAX_INDENT_DEPTH:
                    return [Problem(f"code is indented more than {MAX_INDENT_DEPTH} levels "
                                    "deep; move inner parts into functions", row)]
            elif kind == tokenize.DEDENT:
                indent -= 1
            elif kind == tokenize.NAME and not text.isascii():
                problems.append(Problem(
                    f"the name {text!r} uses non-ASCII letters; use plain ASCII names "
                    "so that look-alike letters cannot disguise what the code does",
                    row, col + 1))
    except (tokenize.TokenError, SyntaxError):
        pass  # the parser reports syntax errors with a better message
    return problems
