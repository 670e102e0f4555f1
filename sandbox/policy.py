"""The language a filter may use: checks on the parsed source, then RestrictedPython.

`check_tree` is stricter than RestrictedPython and explains each refusal in
terms of what a filter can do instead; `restrict` then applies RestrictedPython
(guarded attribute, item, iteration and write access) as a second net, with
`**` routed through a guard that refuses astronomically large integers.
"""
from __future__ import annotations

import ast
import builtins
from collections.abc import Mapping

from RestrictedPython.transformer import RestrictingNodeTransformer, copy_locations

from .capabilities import (
    BUILTIN_NAMES,
    EXCEPTION_NAMES,
    IMPORTABLE,
    MISSING_ATTRIBUTE_REASONS,
    MISSING_NAME_REASONS,
    allowed_attribute_names,
)
from .errors import Problem

MAX_AST_DEPTH = 100

_AVAILABLE = BUILTIN_NAMES | EXCEPTION_NAMES
_UNSUPPORTED: dict[type, str] = {
    ast.ClassDef: "class definitions are not supported in filters (a class can change "
                  "how objects behave); use functions, tuples and dicts",
    ast.AsyncFunctionDef: "async functions are not supported in filters",
    ast.Await: "await is not supported in filters",
    ast.AsyncFor: "async for is not supported in filters",
    ast.AsyncWith: "async with is not supported in filters",
    ast.Yield: "generator functions (yield) are not supported in filters; build and "
               "return a list instead",
    ast.YieldFrom: "generator functions (yield from) are not supported in filters",
    ast.Global: "global is not supported: a filter should judge each alert on its own",
    ast.Nonlocal: "nonlocal is not supported in filters",
    ast.With: "with statements are not supported: a filter has nothing to open",
    ast.TryStar: "except* is not supported in filters",
    ast.Match: "match statements are not supported in filters; use if/elif",
}


def _position(node: ast.AST) -> tuple[int | None, int | None]:
    line = getattr(node, "lineno", None)
    column = getattr(node, "col_offset", None)
    return line, None if column is None else column + 1


def problem_at(node: ast.AST, reason: str) -> Problem:
    return Problem(reason, *_position(node))


def check_depth(tree: ast.AST) -> Problem | None:
    """Refuse trees too deep for the recursive passes that follow (iteratively)."""
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_AST_DEPTH:
            return problem_at(node, f"code is nested more than {MAX_AST_DEPTH} levels deep; "
                                    "split it into smaller expressions or functions")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return None


def _reserved(name: str) -> bool:
    return name.startswith("_") and name != "_"


class _Checker(ast.NodeVisitor):
    """Collects every problem in one pass, so an author can fix them all at once."""

    def __init__(self, module_members: Mapping[str, frozenset[str]]) -> None:
        self.module_members = module_members
        self.attributes = allowed_attribute_names(frozenset().union(*module_members.values()))
        self.problems: list[Problem] = []
        self.bound: set[str] = set()
        self.loaded: list[ast.Name] = []
        self.context: list[str] = []  # "function", "loop" and "finally", innermost last

    def report(self, node: ast.AST, reason: str) -> None:
        self.problems.append(problem_at(node, reason))

    def bind(self, node: ast.AST, name: str) -> None:
        if _reserved(name):
            self.report(node, f"the name {name!r} is not allowed: names starting with '_' "
                              "are reserved for the sandbox")
        self.bound.add(name)

    def generic_visit(self, node: ast.AST) -> None:
        reason = _UNSUPPORTED.get(type(node))
        if reason is not None:
            self.report(node, reason)
            if isinstance(node, ast.ClassDef | ast.AsyncFunctionDef):
                return
        super().generic_visit(node)

    # -- names and attributes --------------------------------------------------

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.loaded.append(node)
            if _reserved(node.id):
                self.report(node, f"the name {node.id!r} is not available: names starting "
                                  "with '_' are reserved for the sandbox")
        else:
            self.bind(node, node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if _reserved(attr):
            self.report(node, f"the attribute {attr!r} is not available: attributes "
                              "starting with '_' expose the interpreter's internals")
        elif attr not in self.attributes:
            why = MISSING_ATTRIBUTE_REASONS.get(attr, "filters can use the usual methods of "
                                                "strings, numbers, lists, dicts and sets, "
                                                "and the members of math and helpers")
            self.report(node, f"the attribute {attr!r} is not available: {why}")
        elif not isinstance(node.ctx, ast.Load):
            self.report(node, f"assigning to the attribute {attr!r} is not allowed: filters "
                              "cannot change objects they did not create")
        self.visit(node.value)

    def visit_arg(self, node: ast.arg) -> None:
        self.bind(node, node.arg)
        if node.annotation is not None:
            self.visit(node.annotation)

    # -- functions and control flow -------------------------------------------

    def _visit_function(self, node: ast.FunctionDef | ast.Lambda) -> None:
        self.context.append("function")
        self.generic_visit(node)
        self.context.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.bind(node, node.name)
        if node.decorator_list:
            self.report(node, "decorators are not supported in filters; call the function "
                              "you need directly")
        self._visit_function(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_function(node)

    def _visit_loop(self, node: ast.For | ast.While) -> None:
        if isinstance(node, ast.For):
            self.visit(node.target)
            self.visit(node.iter)
        else:
            self.visit(node.test)
        self.context.append("loop")
        for statement in node.body:
            self.visit(statement)
        self.context.pop()
        for statement in node.orelse:
            self.visit(statement)

    visit_For = visit_While = _visit_loop  # type: ignore[assignment]

    def visit_Try(self, node: ast.Try) -> None:
        for part in (*node.body, *node.handlers, *node.orelse):
            self.visit(part)
        self.context.append("finally")
        for statement in node.finalbody:
            self.visit(statement)
        self.context.pop()

    def _leaves_finally(self, stops: tuple[str, ...]) -> bool:
        for kind in reversed(self.context):
            if kind in stops:
                return False
            if kind == "finally":
                return True
        return False

    def visit_Return(self, node: ast.Return) -> None:
        if self._leaves_finally(("function",)):
            self.report(node, "return inside finally is not allowed: it silently discards "
                              "errors and time-outs")
        self.generic_visit(node)

    def visit_Break(self, node: ast.Break) -> None:
        if self._leaves_finally(("function", "loop")):
            self.report(node, "break inside finally is not allowed: it silently discards "
                              "errors and time-outs")

    visit_Continue = visit_Break  # type: ignore[assignment]

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is None:
            self.report(node, "a bare 'except:' is not allowed (it would also catch the "
                              "sandbox's time limit); name the errors you expect, e.g. "
                              "'except (KeyError, ValueError):'")
        if node.name is not None:
            self.bind(node, node.name)
        self.generic_visit(node)

    # -- imports ----------------------------------------------------------------

    def _refuse_import(self, node: ast.AST, module: str) -> None:
        self.report(node, f"importing {module!r} is not allowed: filters run without access "
                          f"to files, network or the host, and may import only "
                          f"{' and '.join(IMPORTABLE)}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in IMPORTABLE:
                self._refuse_import(node, alias.name)
            self.bind(node, alias.asname or alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or module not in IMPORTABLE:
            self._refuse_import(node, "." * node.level + module)
            return
        members = self.module_members[module]
        for alias in node.names:
            if alias.name == "*":
                self.report(node, f"'from {module} import *' is not allowed; import the "
                                  "names you use")
            elif alias.name not in members:
                self.report(node, f"{module} has no member {alias.name!r}; available: "
                                  f"{', '.join(sorted(members))}")
            self.bind(node, alias.asname or alias.name)

    def finish(self) -> list[Problem]:
        for node in self.loaded:
            name = node.id
            if name in self.bound or name in _AVAILABLE or _reserved(name):
                continue
            if name in MISSING_NAME_REASONS:
                self.report(node, f"{name!r} is not available in filters: "
                                  f"{MISSING_NAME_REASONS[name]}")
            elif hasattr(builtins, name):
                self.report(node, f"the builtin {name!r} is not available in filters")
            else:
                self.report(node, f"the name {name!r} is not defined")
        return sorted(self.problems, key=lambda p: (p.line or 0, p.column or 0))


def check_tree(tree: ast.Module, module_members: Mapping[str, frozenset[str]]) -> list[Problem]:
    """Every language-level problem in a parsed filter."""
    checker = _Checker(module_members)
    checker.visit(tree)
    return checker.finish()


class _RestrictingPolicy(RestrictingNodeTransformer):
    """RestrictedPython's transformer, recording errors with positions and
    routing `a ** b` through the `_pow_` guard."""

    def __init__(self, errors: list[str], warnings: list[str], used_names: dict[str, bool]) -> None:
        super().__init__(errors, warnings, used_names)
        self.problems: list[Problem] = []

    def error(self, node: ast.AST, info: str) -> None:
        super().error(node, info)
        self.problems.append(problem_at(node, f"not allowed in the sandbox: {info}"))

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node = self.node_contents_visit(node)
        if not isinstance(node.op, ast.Pow):
            return node
        call = ast.Call(func=ast.Name("_pow_", ast.Load()), args=[node.left, node.right],
                        keywords=[])
        copy_locations(call, node)
        return call


class _AnnotationRemover(ast.NodeTransformer):
    """`x: float = 1.0` becomes `x = 1.0` (RestrictedPython has no AnnAssign)."""

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.stmt:
        replacement: ast.stmt
        if node.value is None:
            replacement = ast.Pass()
        else:
            replacement = ast.Assign(targets=[node.target], value=node.value)
        return ast.copy_location(replacement, node)


def restrict(tree: ast.Module) -> list[Problem]:
    """Apply RestrictedPython's guards to `tree` in place; problems if it refuses."""
    _AnnotationRemover().visit(tree)
    ast.fix_missing_locations(tree)
    policy = _RestrictingPolicy([], [], {})
    policy.visit(tree)
    return policy.problems
