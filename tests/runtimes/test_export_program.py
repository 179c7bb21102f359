"""A torch.export program is read as data: real exports pass, executable text is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlapp.exceptions import UnsafeArtifact
from mlapp.runtimes.detect import TORCH_EXPORT, detect_format
from mlapp.runtimes.export_program import check_expression, check_target


class Reshaping(torch.nn.Module):
    """Symbolic size arithmetic in the graph: sym_size nodes, _operator.mul, views."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0] * x.shape[1])
        return torch.cat([flat, y.flatten()]).sum(dim=0, keepdim=True)


class Branching(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.sum() > 0, lambda t: t * 2, lambda t: t - 1, (x,))


def _export(module: torch.nn.Module, args: tuple, dynamic, path: Path) -> Path:
    torch.export.save(torch.export.export(module, args, dynamic_shapes=dynamic), str(path))
    return path


def test_exports_with_symbolic_sizes_and_control_flow_pass(tmp_path):
    rows, cols, length = (torch.export.Dim(n, min=2, max=64) for n in ("rows", "cols", "length"))
    reshaping = _export(
        Reshaping(),
        (torch.zeros(3, 4), torch.zeros(5)),
        {"x": {0: rows, 1: cols}, "y": {0: length}},
        tmp_path / "reshaping.pt2",
    )
    assert detect_format(reshaping) == TORCH_EXPORT
    branching = _export(Branching(), (torch.ones(3),), None, tmp_path / "branching.pt2")
    assert detect_format(branching) == TORCH_EXPORT


@pytest.mark.parametrize(
    "expr",
    [
        "Symbol('s77', positive=True, integer=True)",
        "s0*s1",
        "2*s0 + 1",
        "FloorDiv(s0, 2) + Mod(s1, 3)",
        "Max(1, s0) - Min(s1, 4)",
        "Eq(s0, 4)",
        "s0 <= 1024",
        "-s3",
        "Add(Symbol('s17', positive=True, integer=True), Mul(Symbol('s27'), Symbol('s77')))",
        "Pow(Symbol('s0', integer=True), Integer(2))",
        "StrictLessThan(Integer(-1), Float('1.5', precision=53))",
        "Rational(1, 2) * s0",
    ],
)
def test_symbolic_arithmetic_is_accepted(expr):
    check_expression(expr, "model.json")


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('id')",
        "Symbol('s0').__class__",
        "Symbol('x; import os')",
        "Symbol(__import__('os').getcwd())",
        "PowByNatural(2, 10**9)",
        "Pow(Integer(2), Integer(100000000))",
        "Pow(Pow(Integer(9), Integer(64)), Integer(64))",
        "Float('1e999999999')",
        "Float('1.0', precision=10**9)",
        "s0**99999999",
        "s0^s1",  # sympify reads ^ as a power
        "lambda: 1",
        "[s0 for s0 in range(10**9)]",
        "'text'",
        "s0.subs",
        "eval('1')",
        "Integer(1, evaluate=exec)",
        "9" * 40,
        "(" * 500 + "s0" + ")" * 500,
    ],
)
def test_python_in_a_symbolic_size_is_refused(expr):
    with pytest.raises(UnsafeArtifact):
        check_expression(expr, "model.json")


@pytest.mark.parametrize(
    "target",
    [
        "torch.ops.aten.linear.default",
        "torch.ops.aten.__and__.Tensor",
        "torch.ops.aten.sym_size.int",
        "_operator.getitem",
        "_operator.mul",
        "torch.sym_max",
        "torch.ops.higher_order.cond",
    ],
)
def test_graph_operators_are_accepted(target):
    check_target(target, "model.json")


@pytest.mark.parametrize(
    "target",
    [
        "torch.os.system",
        "torch.ops.aten.from_file.default",
        "torch.ops.aten.__class__.__base__",
        "torch.ops.aten.linear._unsafe",
        "builtins.eval",
        "_operator.attrgetter",
        "math.__loader__",
        "torch.ops.myext.run_shell.default",
        "#custom:op",
        "torch.ops.higher_order.run_const_graph",
    ],
)
def test_other_call_targets_are_refused(target):
    with pytest.raises(UnsafeArtifact):
        check_target(target, "model.json")
