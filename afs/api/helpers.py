"""What a filter may import, documented: ``GET /v1/helpers`` lists every member of the sandbox's
``helpers`` and ``math`` stand-ins with its signature and docstring.

The list is read from the sandbox's own modules (the names its compiler lets a filter import), so
the web page's list beside the editor cannot drift from what the sandbox runs.
"""

from __future__ import annotations

import ast
import inspect
import math
from functools import cache

from fastapi import APIRouter
from sandbox import MODULE_MEMBERS, helpers

from afs.api.deps import ActorDep
from afs.api.schemas import HelperOut

router = APIRouter(prefix="/v1", tags=["filters"])


def _helper_signatures() -> dict[str, str]:
    """``name(arguments)`` of each helper, from its definition without annotations (the helpers are
    wrapped, so their own signatures say only ``*args, **kwargs``)."""
    signatures = {}
    for node in ast.parse(inspect.getsource(helpers)).body:
        if isinstance(node, ast.FunctionDef) and node.name in MODULE_MEMBERS["helpers"]:
            arguments = node.args
            for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                             arguments.vararg, arguments.kwarg]:
                if argument is not None:
                    argument.annotation = None
            signatures[node.name] = f"{node.name}({ast.unparse(arguments)})"
    return signatures


def _math_member(name: str) -> dict[str, str]:
    value = getattr(math, name)
    if isinstance(value, float):
        return {"module": "math", "name": name, "signature": name, "doc": f"The constant {value!r}."}
    doc = inspect.getdoc(value) or ""
    try:
        signature = f"{name}{inspect.signature(value)}"
    except ValueError:  # a builtin without a text signature has it on its docstring's first line
        signature, _, doc = doc.partition("\n")
    return {"module": "math", "name": name, "signature": signature, "doc": doc.strip()}


@cache
def documented() -> list[dict[str, str]]:
    signatures = _helper_signatures()
    listed = [{"module": "helpers", "name": name, "signature": signatures[name],
               "doc": inspect.getdoc(getattr(helpers, name)) or ""} for name in helpers.__all__]
    return listed + [_math_member(name) for name in sorted(MODULE_MEMBERS["math"])]


@router.get("/helpers", response_model=list[HelperOut])
def list_helpers(_: ActorDep) -> list[dict[str, str]]:
    """What a filter may import: `from helpers import ...` (in the order of the sandbox's module) and
    `import math` (math's functions and constants), each with its signature and documentation."""
    return documented()
