"""Turn a filter's source into checked, restricted bytecode plus its metadata.

A filter is a module that defines `def filter(alert)`, returning a bool or a
finite number (a number > 0 is a match and becomes the score). Optional
top-level constants: NAME = "..." and READS = ("diaSource", ...) (the top-level
alert keys it reads; it then sees only those, plus diaSourceId), NEEDS = {...}
(a literal saying what supplemental data the service should fetch for it; it then
finds that data under alert["ppdb"]; what NEEDS may say is the service's business,
checked by the ``check_needs`` it passes in) and WHERE = (...) (its simple cuts as
data, see sandbox.where; ``check_where`` judges the field names against the
service's schema). The module docstring is its
description. Only imports, constants and function definitions may appear at the
top level.
"""
from __future__ import annotations

import ast
import marshal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import helpers, safe_math
from .errors import FilterRejected, Problem
from .lint import lint_source
from .policy import check_depth, check_tree, problem_at, restrict
from .where import EXAMPLE, Condition, normalize, top_keys, where_problems

# Top-level keys of a v11.1 alert (lsst.v11_1.alert), the values READS may name.
ALERT_KEYS = frozenset({
    "diaSourceId", "observation_reason", "target_name", "diaSource", "prvDiaSources",
    "prvDiaForcedSources", "diaObject", "ssSource", "mpc_orbits", "cutoutDifference",
    "cutoutScience", "cutoutTemplate",
})
ALWAYS_READ = "diaSourceId"
MAX_NAME_CHARS = 100
MAX_DESCRIPTION_CHARS = 5_000

MODULE_MEMBERS: dict[str, frozenset[str]] = {
    "math": frozenset(safe_math.MEMBERS),
    "helpers": frozenset(helpers.__all__),
}


@dataclass(frozen=True)
class FilterInfo:
    """What the service shows about a filter; reads is None when READS is absent, needs is the
    value of the NEEDS literal, where the WHERE conditions (each None when absent)."""

    name: str
    description: str
    reads: frozenset[str] | None
    needs: Any = None
    where: tuple[Condition, ...] | None = None


@dataclass(frozen=True)
class CompiledFilter:
    """A checked filter: metadata plus marshalled restricted bytecode for a worker."""

    info: FilterInfo
    code: bytes


NeedsCheck = Callable[[Any], Sequence[str]]  # the NEEDS value -> problems (none: accepted)
WhereCheck = Callable[[tuple[Condition, ...]], Sequence[str]]  # checked WHERE -> problems


def compile_filter(source: str, filename: str = "<filter>", check_needs: NeedsCheck | None = None,
                   check_where: WhereCheck | None = None) -> FilterInfo:
    """Check a filter and describe it; raises FilterRejected with line and reason."""
    return compile_source(source, filename, check_needs, check_where).info


def compile_source(source: str, filename: str = "<filter>", check_needs: NeedsCheck | None = None,
                   check_where: WhereCheck | None = None) -> CompiledFilter:
    """Check a filter and compile it for a worker; raises FilterRejected. ``check_needs``
    judges the NEEDS literal, ``check_where`` the WHERE fields; their problems are reported at
    the line of the literal."""
    problems = lint_source(source)
    if problems:
        raise FilterRejected.from_problems(problems)
    tree = _parse(source, filename)
    depth_problem = check_depth(tree)
    if depth_problem is not None:
        raise FilterRejected.from_problems([depth_problem])
    problems = _structure_problems(tree) + check_tree(tree, MODULE_MEMBERS)
    if problems:
        raise FilterRejected.from_problems(sorted(problems, key=_reading_order))
    info = _describe(tree, filename, check_needs, check_where)
    problems = restrict(tree)
    if problems:
        raise FilterRejected.from_problems(problems)
    try:
        code = compile(tree, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise FilterRejected(f"the filter could not be compiled: {exc}") from None
    return CompiledFilter(info, marshal.dumps(code))


def _reading_order(problem: Problem) -> tuple[bool, int, int]:
    return problem.line is None, problem.line or 0, problem.column or 0


def _parse(source: str, filename: str) -> ast.Module:
    try:
        return ast.parse(source, filename, "exec")
    except SyntaxError as exc:
        reason = f"syntax error: {exc.msg}"
        raise FilterRejected(reason, exc.lineno, exc.offset) from None
    except (RecursionError, MemoryError):
        raise FilterRejected("the filter is too deeply nested or too large to parse; "
                             "split it into smaller expressions") from None
    except ValueError as exc:  # e.g. null bytes, already refused by the linter
        raise FilterRejected(f"the filter could not be parsed: {exc}") from None


def _is_docstring(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def _target_name(node: ast.stmt) -> str | None:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def _structure_problems(tree: ast.Module) -> list[Problem]:
    """The module shape: one `def filter(alert)`, and only definitions at top level."""
    problems: list[Problem] = []
    definitions = []
    for index, node in enumerate(tree.body):
        if index == 0 and _is_docstring(node):
            continue
        if isinstance(node, ast.FunctionDef):
            if node.name == "filter":
                definitions.append(node)
        elif isinstance(node, ast.Import | ast.ImportFrom | ast.Pass):
            pass
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            if _target_name(node) == "filter":
                problems.append(problem_at(node, "define the filter with 'def filter(alert):'"))
        elif not isinstance(node, ast.ClassDef):  # classes get their own message
            problems.append(problem_at(node, "only imports, constants and function "
                                             "definitions may appear at the top level of a "
                                             "filter; put this inside a function"))
    if not definitions:
        problems.append(Problem("the filter must define a function 'def filter(alert):' at "
                                "the top level"))
    for extra in definitions[1:]:
        problems.append(problem_at(extra, "'filter' is defined more than once"))
    if definitions:
        args = definitions[0].args
        simple = not (args.vararg or args.kwarg or args.kwonlyargs or args.defaults)
        if not simple or len(args.posonlyargs) + len(args.args) != 1:
            problems.append(problem_at(definitions[0], "the filter function must take exactly "
                                                       "one argument: def filter(alert):"))
    return problems


def _describe(tree: ast.Module, filename: str, check_needs: NeedsCheck | None,
              check_where: WhereCheck | None) -> FilterInfo:
    problems: list[Problem] = []
    name = None
    reads: frozenset[str] | None = None
    needs_node: ast.stmt | None = None
    needs: Any = None
    where_node: ast.stmt | None = None
    where: tuple[Condition, ...] | None = None
    for node in tree.body:
        target = _target_name(node)
        value = getattr(node, "value", None)
        if target == "NAME":
            if not (isinstance(value, ast.Constant) and isinstance(value.value, str)
                    and 0 < len(value.value) <= MAX_NAME_CHARS):
                problems.append(problem_at(node, f"NAME must be a string of 1 to "
                                                 f"{MAX_NAME_CHARS} characters"))
            elif name is not None:
                problems.append(problem_at(node, "NAME is set more than once"))
            else:
                name = value.value
        elif target == "READS":
            if reads is not None:
                problems.append(problem_at(node, "READS is set more than once"))
                continue
            reads = _reads(node, value, problems)
        elif target == "NEEDS":
            if needs_node is not None:
                problems.append(problem_at(node, "NEEDS is set more than once"))
                continue
            needs_node, needs = node, _literal(
                node, value, problems, 'NEEDS must be a literal dict, e.g. NEEDS = {"history": {"days": 3650}}')
        elif target == "WHERE":
            if where_node is not None:
                problems.append(problem_at(node, "WHERE is set more than once"))
                continue
            where_node, where = node, _where(node, value, problems)
    if needs_node is not None and needs is not None and check_needs is not None:
        problems += [problem_at(needs_node, reason) for reason in check_needs(needs)]
    if where_node is not None and where is not None:
        if check_where is not None:
            problems += [problem_at(where_node, reason) for reason in check_where(where)]
        unread = top_keys(where) - reads if reads is not None else frozenset()
        if unread:
            problems.append(problem_at(where_node, f"WHERE tests {', '.join(sorted(unread))}, which READS "
                                                   "does not list"))
    description = ast.get_docstring(tree) or ""
    if len(description) > MAX_DESCRIPTION_CHARS:
        problems.append(Problem(f"the docstring is longer than {MAX_DESCRIPTION_CHARS} "
                                "characters", 1))
    if problems:
        raise FilterRejected.from_problems(problems)
    default_name = filename.strip("<>").removesuffix(".py") or "filter"
    return FilterInfo(name or default_name, description, reads, needs, where)


def _where(node: ast.stmt, value: ast.expr | None, problems: list[Problem]) -> tuple[Condition, ...] | None:
    """The checked WHERE conditions, or None when the literal is refused."""
    literal = _literal(node, value, problems, f"WHERE must be a literal tuple, e.g. {EXAMPLE}")
    if literal is None:
        return None
    found = where_problems(literal)
    problems += [problem_at(node, reason) for reason in found]
    return None if found else normalize(literal)


def _literal(node: ast.stmt, value: ast.expr | None, problems: list[Problem], refusal: str) -> Any:
    """A constant's value as a plain literal, never evaluated code; ``refusal`` says what it must be."""
    try:
        return ast.literal_eval(value) if value is not None else None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        problems.append(problem_at(node, refusal))
        return None


def _reads(node: ast.stmt, value: ast.expr | None, problems: list[Problem]) -> frozenset[str]:
    example = 'READS = ("diaSource", "prvDiaSources")'
    if not isinstance(value, ast.Tuple | ast.List | ast.Set):
        problems.append(problem_at(node, f"READS must be a tuple of alert keys, e.g. {example}"))
        return frozenset()
    keys = set()
    for element in value.elts:
        if not (isinstance(element, ast.Constant) and isinstance(element.value, str)):
            problems.append(problem_at(element, f"READS must list alert keys as strings, e.g. "
                                                f"{example}"))
        elif element.value not in ALERT_KEYS:
            problems.append(problem_at(element, f"{element.value!r} is not a top-level alert "
                                                f"key; known keys: {', '.join(sorted(ALERT_KEYS))}"))
        else:
            keys.add(element.value)
    return frozenset(keys | {ALWAYS_READ})
