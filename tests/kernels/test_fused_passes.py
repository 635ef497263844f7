"""The fused convolution's training step with forces makes 10 passes over the edges (the
differentiable edge pair and the one-pass JVP node slots of :mod:`equivar.kernels.fused`), with
the same derivatives to third order as the separate slots; on the C engine."""

import types

import pytest
import torch

from equivar.kernels import cpu_fused
from equivar.kernels.fused import fused_conv
from equivar.kernels.layout import edge_layout
from equivar.kernels.spec import ConvSpec
from tests.kernels.conftest import assert_close, make_tp
from tests.kernels.test_fused import SPECS, _inputs, _reference


@pytest.fixture(autouse=True)
def _needs_compiler():
    ok, why = cpu_fused.available()
    if not ok:
        pytest.skip(why)


def _counting_engine(jvp=True):
    """``cpu_fused`` with every kernel call counted by name (and, ``jvp=False``, without the
    one-pass JVP node slot, as an engine that lacks it)."""
    calls: dict[str, int] = {}

    def counted(name):
        def run(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return getattr(cpu_fused, name)(*args, **kwargs)

        return run

    names = ["evaluate", "evaluate_edge_pair"] + (["evaluate_node_jvp"] if jvp else [])
    return types.SimpleNamespace(**{n: counted(n) for n in names}), calls


def _forces_step(spec, tp, engine=None):
    """Energy and forces in a loss, as training does: x, y and w depend on "positions" ``p``;
    returns the loss' gradient in ``p`` (``engine`` None: the e3nn reference)."""
    (x, y, w), index = _inputs(tp, 6, 14, torch.float64)
    p = torch.tensor([0.7, -1.3, 0.9], dtype=torch.float64, requires_grad=True)
    x, y, w = x.detach() * p[0], y.detach() * p[1], w.detach() * p[2]
    if engine is None:
        out = _reference(tp, x, y, w, index, 6)
    else:
        out = fused_conv(spec, x, y, w, edge_layout(index, 6), engine=engine)
    energy = out.square().sum()
    forces = torch.autograd.grad(energy, p, create_graph=True)[0]
    loss = energy + forces.square().sum()
    return torch.autograd.grad(loss, p)[0]


def test_a_forces_training_step_makes_ten_passes_over_the_edges():
    tp = make_tp(*SPECS["uniform"])
    spec = ConvSpec.from_e3nn(tp)
    engine, calls = _counting_engine()
    got = _forces_step(spec, tp, engine)
    # forward 1; forces' backward: dT/dx + edge pair = 2; loss' backward: 2 (dT/dx node) +
    # 3 (edge pair: two JVP node slots + edge pair) + 2 (forward node)
    assert sum(calls.values()) == 10, calls
    assert calls == {"evaluate": 4, "evaluate_edge_pair": 4, "evaluate_node_jvp": 2}
    assert_close(got, _forces_step(spec, tp), torch.float64, "against the reference")
    plain, plain_calls = _counting_engine(jvp=False)
    assert_close(_forces_step(spec, tp, plain), got, torch.float64, "without the JVP kernel")
    assert sum(plain_calls.values()) == 12  # each JVP node slot as two slots


@pytest.mark.parametrize("name", sorted(SPECS))
def test_node_jvp_is_the_sum_of_two_node_slots(name, dtype):
    tp = make_tp(*SPECS[name], dtype)
    spec = ConvSpec.from_e3nn(tp)
    (x, y, w), index = _inputs(tp, 7, 13, dtype)
    (_, y2, w2), _ = _inputs(tp, 7, 13, dtype, seed=1)
    layout = edge_layout(index, 7)
    g = torch.randn(7, spec.out_dim, dtype=dtype)
    with torch.no_grad():
        for slot, src in ((0, x), (1, g)):
            ops1, ops2 = [g, x, y, w], [g, x, y2, w2]
            ops1[slot] = ops2[slot] = None
            want = cpu_fused.evaluate(spec, slot, ops1, layout)
            want = want + cpu_fused.evaluate(spec, slot, ops2, layout)
            got = cpu_fused.evaluate_node_jvp(spec, slot, src, y, w, y2, w2, layout)
            assert_close(got, want, dtype, f"JVP node slot {slot}")


def test_third_derivatives_match_the_reference():
    """The edge pair is differentiable again: gradients of second derivatives agree with the
    e3nn reference (and pass gradcheck)."""
    tp = make_tp("2x0e+2x1o", 2, ("0e", "1o", "2e"))
    spec = ConvSpec.from_e3nn(tp)
    (x, y, w), index = _inputs(tp, 4, 7, torch.float64, seed=2)
    layout = edge_layout(index, 4)
    cot = torch.randn(4, spec.out_dim, dtype=torch.float64)

    def first(conv):
        def fn(x, y, w):
            return torch.autograd.grad((conv(x, y, w) * cot).sum(), (x, y, w), create_graph=True)

        return fn

    fused = first(lambda x, y, w: fused_conv(spec, x, y, w, layout, engine=cpu_fused))
    reference = first(lambda x, y, w: _reference(tp, x, y, w, index, 4))
    assert torch.autograd.gradgradcheck(fused, (x, y, w))

    def third(fn):
        grads = fn(x, y, w)
        second = torch.autograd.grad(sum((g * g).sum() for g in grads), (x, y, w),
                                     create_graph=True)  # fmt: skip
        return torch.autograd.grad(sum((s**3).sum() for s in second), (x, y, w))

    for a, b, what in zip(third(fused), third(reference), "xyw", strict=True):
        assert_close(a, b, torch.float64, f"third derivative in {what}")
