"""Safe, vectorised evaluation of selection expressions over branches.

Users write type definitions and region variables the way ROOT selections read
(``genLepton_index >= 0 && (genLepton_kind == 1 || genLepton_kind == 3)``,
``abs(tau_eta)``). They are parsed once with :mod:`ast` after mapping the C
operators to Python ones; only arithmetic, comparisons, boolean logic, numbers,
branch names and a few numpy functions are allowed, so nothing in a
configuration file can execute code.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": np.abs,
    "fabs": np.abs,
    "sqrt": np.sqrt,
    "exp": np.exp,
    "log": np.log,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "atan2": np.arctan2,
    "hypot": np.hypot,
    "min": np.minimum,
    "max": np.maximum,
}
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitAnd: np.logical_and,
    ast.BitOr: np.logical_or,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_CONSTANTS = {"true": True, "false": False, "True": True, "False": False}


def _to_python_syntax(text: str) -> str:
    """Maps ROOT/C++ boolean operators to Python ones (`&&`, `||`, `!`).

    `!` becomes `~`, which binds tighter than comparisons as `!` does in C++, and is
    evaluated as a logical not.
    """
    text = text.replace("&&", " and ").replace("||", " or ")
    return re.sub(r"!(?!=)", " ~", text)


@dataclass(frozen=True)
class Expression:
    """A parsed expression; `branches` lists the names it reads."""

    text: str
    tree: ast.Expression = field(repr=False, compare=False)
    branches: frozenset[str]
    key: str = ""  # where it was configured (`types.jet`), for messages

    def evaluate(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Evaluates over flat per-candidate arrays; the result has one value per candidate.
        Undefined values (a log of 0, a division by 0) become inf or NaN without a warning:
        they fall in no bin."""
        with np.errstate(all="ignore"):
            return np.asarray(_evaluate(self.tree.body, arrays))


def parse_expression(text: str, where: str) -> Expression:
    """Parses `text`; `where` names the file and key for error messages."""
    try:
        tree = ast.parse(_to_python_syntax(text).strip(), mode="eval")
    except SyntaxError as err:
        raise ConfigError(f"{where}: cannot parse expression {text!r}: {err.msg}") from err
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                raise ConfigError(
                    f"{where}: expression {text!r} calls an unknown function; "
                    f"allowed: {', '.join(sorted(_FUNCTIONS))}"
                )
        elif isinstance(node, ast.Name):
            if node.id not in _FUNCTIONS and node.id not in _CONSTANTS:
                names.add(node.id)
        elif isinstance(node, ast.Constant) and (
            isinstance(node.value, complex) or not isinstance(node.value, int | float)
        ):
            raise ConfigError(
                f"{where}: expression {text!r} is not numeric: {node.value!r} is not a number"
            )
        elif not isinstance(node, _ALLOWED_NODES):
            raise ConfigError(
                f"{where}: expression {text!r} uses {type(node).__name__}, which is not allowed"
            )
    return Expression(text=text, tree=tree, branches=frozenset(names), key=where)


_ALLOWED_NODES = (
    ast.Expression,
    ast.BoolOp,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.Constant,
    ast.Load,
    ast.And,
    ast.Or,
    ast.Not,
    ast.Invert,
    ast.USub,
    ast.UAdd,
    *_BINARY,
    *_COMPARE,
)


def _evaluate(node: ast.AST, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(node, ast.Constant):
        # numpy scalars, so that `1 / 0` is inf like every other division, not an exception
        return np.float64(node.value)  # type: ignore[arg-type]  # numbers only (parse_expression)
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        return arrays[node.id]
    if isinstance(node, ast.BoolOp):
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        combined = _evaluate(node.values[0], arrays)
        for value in node.values[1:]:
            combined = combine(combined, _evaluate(value, arrays))
        return combined
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, arrays)
        if isinstance(node.op, ast.Not | ast.Invert):
            return np.logical_not(operand)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, arrays), _evaluate(node.right, arrays))
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, arrays)
        result: Any = True
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, arrays)
            result = np.logical_and(result, _COMPARE[type(op)](left, right))
            left = right
        return result
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return _FUNCTIONS[node.func.id](*(_evaluate(arg, arrays) for arg in node.args))
    raise TypeError(f"unexpected node {type(node).__name__}")  # parse_expression rejects these
