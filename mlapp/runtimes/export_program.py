"""Refuse a ``torch.export`` program whose serialized graph carries executable text.

``torch.export.load`` does more than read tensors from a ``.pt2`` archive's
``models/<name>.json``:

- every ``guards_code`` string is compiled and executed (and runs again on every forward);
- every symbolic size (``expr_str``) goes through ``sympy.sympify``, which evaluates Python;
- every node's ``target`` is resolved by walking attributes from ``torch``, ``operator`` or
  ``math``, so ``torch.os.system`` is reachable, and is then CALLED by the graph.

So the program is read as data first: no guards code at all, symbolic expressions parsed with
:mod:`ast` and accepted only when they use symbols, numbers, arithmetic and the sympy
functions torch itself writes, and node targets only from an allow-list of tensor and
symbolic-integer operations. No torch import here: this runs before torch sees the file.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from typing import Any

from mlapp.exceptions import ArtifactError, UnsafeArtifact

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
#: ``torch.ops.aten.<op>[.<overload>]``: ATen operators, the vocabulary of exported graphs.
_ATEN = re.compile(rf"torch\.ops\.aten\.({_NAME})(?:\.({_NAME}))?")
#: ATen operators that read the file system.
_ATEN_DENIED = frozenset({"from_file", "_from_file"})
#: ATen's own dunder operators (bitwise ops); any other dunder name walks Python internals.
_ATEN_DUNDERS = frozenset(
    {
        "__and__",
        "__or__",
        "__xor__",
        "__lshift__",
        "__rshift__",
        "__iand__",
        "__ior__",
        "__ixor__",
        "__ilshift__",
        "__irshift__",
    }
)
#: Control flow operators: they call subgraphs of the same (checked) program.
_HIGHER_ORDER = frozenset({"cond", "while_loop", "map_impl", "scan"})
#: Python operators and torch's symbolic helpers that exported graphs use on sizes.
_OPERATORS = (
    "getitem add sub mul floordiv truediv mod neg pos abs pow eq ne lt le gt ge and_ or_ xor not_"
)
_SYMBOLIC = "sym_int sym_float sym_max sym_min sym_not sym_ite sym_sqrt sym_sum _check"
_OTHER_TARGETS = frozenset(
    {
        *(f"_operator.{name}" for name in _OPERATORS.split()),
        *(f"torch.{name}" for name in _SYMBOLIC.split()),
        *(f"math.{name}" for name in ("ceil", "floor", "sqrt", "trunc")),
    }
)

#: Functions an ``expr_str`` may call: sympy's constructors as ``srepr`` writes them (torch
#: serializes sizes that way), comparisons, and the functions torch's deserializer provides.
#: Powers are checked apart (:data:`_POWERS`).
_EXPR_FUNCTIONS = frozenset(
    {
        "Symbol",
        "Integer",
        "Float",
        "Rational",
        "Add",
        "Mul",
        "StrictLessThan",
        "LessThan",
        "StrictGreaterThan",
        "GreaterThan",
        "Equality",
        "Unequality",
        "BooleanTrue",
        "BooleanFalse",
        "IntInfinity",
        "NegativeIntInfinity",
        "Infinity",
        "NegativeInfinity",
        "Zero",
        "One",
        "NegativeOne",
        "Half",
        "Max",
        "Min",
        "Abs",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "And",
        "Or",
        "Not",
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "Mod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "LShift",
        "RShift",
        "IntTrueDiv",
        "FloatTrueDiv",
        "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "Identity",
    }
)
#: A power turns a short string into an unbounded computation: allowed with a small constant
#: exponent, over a base holding no other power.
_POWERS = frozenset({"Pow", "PowByNatural", "FloatPow"})
_MAX_EXPONENT = 64
#: Names torch gives its size symbols: s0, s77, u3, ...
_SYMBOL = re.compile(r"[a-z]{1,3}\d{1,9}")
_FLOAT_TEXT = re.compile(r"-?\d{1,40}(\.\d{0,40})?(e-?\d{1,3})?")
_SYMBOL_ASSUMPTIONS = frozenset(
    {"positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "nonzero"}
)
_EXPR_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.BitAnd, ast.BitOr)
_EXPR_UNARY = (ast.USub, ast.UAdd, ast.Not, ast.Invert)
_EXPR_COMPARE = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_MAX_EXPR_CHARS = 2000
_MAX_EXPR_NODES = 400
_MAX_CONSTANT = 2**63


def check_program_json(data: bytes, member: str) -> None:
    """Refuse a serialized exported program (``models/*.json``) carrying executable text."""
    try:
        program = json.loads(data)
    except (ValueError, RecursionError):
        raise ArtifactError(f"{member} is not valid JSON.") from None
    if not isinstance(program, dict):
        raise ArtifactError(f"{member} is not a serialized exported program.")
    if program.get("guards_code"):
        raise UnsafeArtifact(
            f"{member} carries guards code, Python that torch.export.load would execute; "
            "mlapp refuses exported programs with guards. Export again with a current torch."
        )
    constraints = program.get("range_constraints") or {}
    if not isinstance(constraints, dict):
        raise ArtifactError(f"{member}: range_constraints is not a mapping.")
    for symbol in constraints:
        if not _SYMBOL.fullmatch(str(symbol)):
            raise UnsafeArtifact(f"{member}: {str(symbol)[:100]!r} is not a size symbol.")
    try:
        for key, value in _walk(program):
            if key == "expr_str":
                check_expression(value, member)
            elif key in {"target", "as_operator"} and isinstance(value, str):
                check_target(value, member)
    except RecursionError:
        raise ArtifactError(f"{member} is nested too deeply.") from None


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of every mapping inside ``value``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                yield key, child
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def check_target(target: str, member: str) -> None:
    """Accept the operators an exported graph may call; refuse everything else."""
    if target in _OTHER_TARGETS:
        return
    aten = _ATEN.fullmatch(target)
    if aten:
        op, overload = aten.group(1), aten.group(2)
        dunder = op.startswith("__") and op not in _ATEN_DUNDERS
        if not dunder and op not in _ATEN_DENIED and not (overload or "").startswith("_"):
            return
    elif target.removeprefix("torch.ops.higher_order.") in _HIGHER_ORDER:
        return
    raise UnsafeArtifact(
        f"{member} calls {target[:200]!r}, which is not an operator mlapp allows in an "
        "exported graph (ATen operators, symbolic size arithmetic and control flow)."
    )


def check_expression(expr: Any, member: str) -> None:
    """Accept a symbolic size expression only when it is arithmetic on symbols and numbers."""
    if not isinstance(expr, str) or len(expr) > _MAX_EXPR_CHARS:
        raise UnsafeArtifact(f"{member}: a symbolic size expression is too long or not text.")
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise UnsafeArtifact(
            f"{member}: the symbolic size {expr[:100]!r} is not an expression."
        ) from None
    nodes = list(ast.walk(tree))
    if len(nodes) > _MAX_EXPR_NODES:
        raise UnsafeArtifact(f"{member}: a symbolic size expression is too large.")
    # Strings are allowed in two places only: the name given to Symbol(...) and the digits
    # given to Float(...).
    strings = {
        id(node.args[0]): node.func.id
        for node in nodes
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"Symbol", "Float"}
        and node.args
    }
    for node in nodes:
        if not _allowed_node(node, strings):
            raise UnsafeArtifact(
                f"{member}: the symbolic size {expr[:100]!r} is not plain arithmetic on size "
                "symbols; torch.export.load would evaluate it as Python."
            )


def _allowed_power(node: ast.Call) -> bool:
    if len(node.args) != 2 or node.keywords:
        return False
    base, exponent = node.args
    if isinstance(exponent, ast.Call) and isinstance(exponent.func, ast.Name):
        if exponent.func.id != "Integer" or len(exponent.args) != 1:
            return False
        exponent = exponent.args[0]
    if isinstance(exponent, ast.UnaryOp) and isinstance(exponent.op, ast.USub):
        exponent = exponent.operand
    small = (
        isinstance(exponent, ast.Constant)
        and type(exponent.value) is int
        and exponent.value <= _MAX_EXPONENT
    )
    nested = any(
        isinstance(inner, ast.Call)
        and isinstance(inner.func, ast.Name)
        and inner.func.id in _POWERS
        for inner in ast.walk(base)
    )
    return small and not nested


def _allowed_node(node: ast.AST, strings: dict[int, str]) -> bool:
    if isinstance(node, (ast.Expression, ast.Load, *_EXPR_BINOPS, *_EXPR_UNARY, *_EXPR_COMPARE)):
        return True
    if isinstance(node, ast.BinOp):
        return isinstance(node.op, _EXPR_BINOPS)
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, _EXPR_UNARY)
    if isinstance(node, ast.Compare):
        return all(isinstance(op, _EXPR_COMPARE) for op in node.ops)
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            return False
        if node.func.id in _POWERS:
            return _allowed_power(node)
        if node.func.id not in _EXPR_FUNCTIONS:
            return False
        if node.func.id == "Symbol":
            return len(node.args) == 1 and all(
                kw.arg in _SYMBOL_ASSUMPTIONS
                and isinstance(kw.value, ast.Constant)
                and isinstance(kw.value.value, bool)
                for kw in node.keywords
            )
        if node.func.id == "Float":
            return len(node.args) == 1 and all(
                kw.arg == "precision"
                and isinstance(kw.value, ast.Constant)
                and type(kw.value.value) is int
                and 0 < kw.value.value <= 128
                for kw in node.keywords
            )
        return not node.keywords
    if isinstance(node, ast.keyword):
        return node.arg in _SYMBOL_ASSUMPTIONS or node.arg == "precision"
    if isinstance(node, ast.Name):
        return (
            node.id in _EXPR_FUNCTIONS
            or node.id in _POWERS
            or node.id in {"True", "False"}
            or bool(_SYMBOL.fullmatch(node.id))
        )
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, str):
            kind = strings.get(id(node))
            if kind == "Symbol":
                return bool(_SYMBOL.fullmatch(value))
            return kind == "Float" and bool(_FLOAT_TEXT.fullmatch(value))
        if isinstance(value, bool):
            return True
        if isinstance(value, int):
            return abs(value) <= _MAX_CONSTANT
        if isinstance(value, float):
            return abs(value) <= float(_MAX_CONSTANT)
        return False
    return False
