"""metaloss.losses.ops.absolute: torch.abs's values and derivatives of every order."""

from __future__ import annotations

import torch

from metaloss.losses.ops import absolute


def test_values_equal_torch_abs_including_zero_signed_zero_inf_and_nan() -> None:
    x = torch.tensor([-3.5, -1e-30, -0.0, 0.0, 2.0, float("inf"), -float("inf"), float("nan")])
    expected = x.abs()
    got = absolute(x)
    assert torch.equal(torch.isnan(got), torch.isnan(expected))
    finite = ~torch.isnan(expected)
    assert torch.equal(got[finite], expected[finite])


def test_first_and_second_derivatives_equal_torch_abs() -> None:
    x = torch.tensor([-2.0, -0.5, 0.0, 0.25, 3.0], dtype=torch.float64)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0], dtype=torch.float64)
    results = []
    for fn in (torch.abs, absolute):
        leaf = x.clone().requires_grad_()
        value = (weights * fn(leaf) ** 2 + fn(leaf)).sum()
        (first,) = torch.autograd.grad(value, leaf, create_graph=True)
        (second,) = torch.autograd.grad(first.sum(), leaf)
        results.append((value.detach(), first.detach(), second))
    for reference, ours in zip(results[0], results[1], strict=True):
        assert torch.equal(reference, ours)


def test_gradient_at_zero_is_zero_like_torch_abs() -> None:
    leaf = torch.zeros(3, requires_grad=True)
    absolute(leaf).sum().backward()
    assert torch.equal(leaf.grad, torch.zeros(3))  # type: ignore[arg-type]


def _node_names(fn: object) -> set[str]:
    names, stack, seen = set(), [fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        names.add(type(node).__name__)
        stack.extend(next_fn for next_fn, _ in node.next_functions)  # type: ignore[attr-defined]
    return names


def test_the_inner_gradient_graph_has_no_abs_node() -> None:
    # The point of the op: the graph the meta-gradient goes through holds no AbsBackward (whose
    # own backward makes the slow efficient-zero sgn gradient), only ordinary products.
    leaf = torch.randn(4, requires_grad=True)
    (first,) = torch.autograd.grad((absolute(leaf) ** 2).sum(), leaf, create_graph=True)
    assert "AbsBackward0" not in _node_names(first.grad_fn)
    (reference,) = torch.autograd.grad((leaf.abs() ** 2).sum(), leaf, create_graph=True)
    assert "AbsBackward0" in _node_names(reference.grad_fn)  # the check can see one
