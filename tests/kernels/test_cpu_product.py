"""The fused CPU kernel of the product basis (C, compiled with the fused convolution) equals the
plain-torch products: the 4-linear form's gradients to second order (gradcheck and
gradgradcheck), the product basis' value and first and second derivatives in float32 and
float64, its equivariance, and a potential's energies, forces and training gradients; the torch
path runs where the kernel cannot (other dtypes, traced, no compiler)."""

import pytest
import torch

from equivar.kernels import cpu_fused, cpu_product
from equivar.models import build
from equivar.nn import ProductBasis
from equivar.testing.fixtures import random_molecule_batch
from equivar.testing.wigner import wigner_D
from tests.kernels.conftest import assert_close, assert_same_parameter_gradients
from tests.nn.test_blocks import _float64_built, _rel, _rotations
from tests.nn.test_product import TINY

IRREPS = ["4x0e+4x1o", "3x0e+3x1o+3x2e", "2x0e+2x0o+2x1o+2x1e+2x2e", "8x0e+8x1o+8x2e"]


@pytest.fixture(autouse=True)
def _needs_compiler():
    if cpu_product.usable(torch.zeros(1)):
        return
    pytest.skip(cpu_fused.available()[1] or "the product kernel is not in the library")


def _pair(irreps, correlation=3, num_species=3, dtype=torch.float64):
    """Two product bases with the same weights: the kernel ("auto") and plain torch."""
    kernel = _float64_built(lambda: ProductBasis(irreps, correlation, num_species)).to(dtype)
    torch_ = _float64_built(lambda: ProductBasis(irreps, correlation, num_species,
                                                 kernel="torch")).to(dtype)  # fmt: skip
    torch_.load_state_dict(kernel.state_dict())
    return kernel, torch_


def _operands(plan, n, requires_grad=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    kw = {"dtype": torch.float64, "generator": gen}
    b = torch.randn(n, plan.dim, **kw).requires_grad_(requires_grad)
    a = torch.randn(n, plan.dim, **kw).requires_grad_(requires_grad)
    w = torch.randn(n, plan.n_paths, plan.mul, **kw).requires_grad_(requires_grad)
    return b, a, w


@pytest.mark.parametrize("irreps", ["2x0e+2x1o", "1x0e+1x1o+1x2e", "2x0o+2x1e"])
def test_gradcheck_and_gradgradcheck(irreps):
    """All four slots of the form, to second order, against finite differences."""
    plan = _float64_built(lambda: ProductBasis(irreps, 2, 1)).plan
    b, a, w = _operands(plan, 3)
    fn = lambda b, a, w: cpu_product.cpu_product(plan, b, a, w)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (b, a, w))
    assert torch.autograd.gradgradcheck(fn, (b, a, w))
    # the first power: one tensor in both slots, autograd adds the two gradients
    square = lambda a, w: cpu_product.cpu_product(plan, a, a, w)  # noqa: E731
    assert torch.autograd.gradcheck(square, (a, w))
    assert torch.autograd.gradgradcheck(square, (a, w))


def test_layout_round_trip_and_its_derivatives():
    plan = _float64_built(lambda: ProductBasis("3x0e+3x1o+3x2e", 2, 1)).plan
    x = torch.randn(4, plan.dim, dtype=torch.float64, requires_grad=True)
    t = cpu_product.to_t_layout(plan, x)
    # t-layout: component-major, channel innermost (block l=1 starts at component 1)
    assert torch.equal(t.reshape(4, -1, 3)[:, 1:4], x[:, 3:12].reshape(4, 3, 3).transpose(1, 2))
    assert torch.equal(cpu_product.from_t_layout(plan, t), x)
    assert torch.autograd.gradcheck(lambda x: cpu_product.to_t_layout(plan, x) ** 2, (x,))
    assert torch.autograd.gradgradcheck(lambda x: cpu_product.from_t_layout(plan, x) ** 2, (x,))


@pytest.mark.parametrize("irreps", IRREPS)
@pytest.mark.parametrize("correlation", [2, 3])
def test_kernel_equals_torch_to_second_order(irreps, correlation, dtype):
    """Value, the gradient of a random projection (input and weights) and the gradient of that
    gradient's norm: what forces in a loss need."""
    kernel, torch_ = _pair(irreps, correlation, dtype=dtype)
    x = kernel.irreps_in.randn(7, -1, dtype=dtype).requires_grad_()
    species = torch.tensor([0, 1, 2, 0, 1, 2, 2])
    got, want = kernel(x, species), torch_(x, species)
    assert_close(got, want, dtype, "value")
    cot = torch.randn(want.shape, dtype=dtype)
    grads = []
    for module, out in ((kernel, got), (torch_, want)):
        inputs = (x, *module.parameters())
        first = torch.autograd.grad((out * cot).sum(), inputs, create_graph=True)
        second = torch.autograd.grad(sum((f * f).sum() for f in first), inputs)
        grads.append((first, second))
    for order, (a_list, b_list) in enumerate(zip(*grads, strict=True)):
        for k, (a, b) in enumerate(zip(a_list, b_list, strict=True)):
            assert_close(a, b, dtype, f"derivative {order + 1} of input {k}")


@pytest.mark.parametrize("irreps", IRREPS)
def test_kernel_path_is_equivariant(irreps):
    kernel, _ = _pair(irreps)
    x = kernel.irreps_in.randn(9, -1, dtype=torch.float64)
    species = torch.tensor([0, 1, 2, 0, 1, 2, 2, 1, 0])
    for R in _rotations(torch.float64):
        D = wigner_D(kernel.irreps_in, R)
        assert _rel(kernel(x @ D.T, species), kernel(x, species) @ D.T) < 1e-10


def test_potential_energies_forces_and_training_gradients(dtype):
    """A potential with the kernel equals the same potential with torch products."""
    model = build("potential", **TINY, dtype="float64").to(dtype)
    reference = build("potential", **TINY, dtype="float64").to(dtype)
    reference.load_state_dict(model.state_dict())
    for m in reference.modules():
        if isinstance(m, ProductBasis):
            m.kernel = "torch"
    batch = random_molecule_batch(n_graphs=2, n_atoms=(4, 6), species=(1, 6, 8), cutoff=3.5,
                                  seed=3, dtype=dtype)  # fmt: skip
    got, want = model(batch), reference(batch)
    assert_close(got["energy"], want["energy"], dtype, "energy")
    assert_close(got["forces"], want["forces"], dtype, "forces")
    assert_same_parameter_gradients(reference, model, batch,
                                    tol=1e-10 if dtype == torch.float64 else 1e-3)  # fmt: skip


def test_torch_runs_where_the_kernel_cannot(monkeypatch, tmp_path):
    kernel, torch_ = _pair("3x0e+3x1o", 2, 2)
    x = kernel.irreps_in.randn(5, -1, dtype=torch.float64)
    species = torch.tensor([0, 1, 1, 0, 1])
    want = torch_(x, species)
    # a transform the C call cannot see through: vmap over a batch of inputs
    batched = torch.func.vmap(lambda x: kernel(x, species))(x[None])
    assert_close(batched[0], want, torch.float64, "under vmap")
    assert not cpu_product.usable(x.to(torch.bfloat16))
    assert not cpu_product.usable(x, x.float())
    # no C compiler: the torch path, same numbers
    monkeypatch.setattr(cpu_fused, "_state", {})
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("EQUIVAR_CACHE", str(tmp_path))
    assert not cpu_product.usable(x)
    assert_close(kernel(x, species), want, torch.float64, "without a compiler")


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="unknown product kernel 'fast'"):
        ProductBasis("2x0e+2x1o", 2, 1, kernel="fast")
    product = ProductBasis("2x0e+2x1o", 2, 1)
    assert "kernel=" not in repr(product)
    assert "kernel='torch'" in repr(ProductBasis("2x0e+2x1o", 2, 1, kernel="torch"))
    with pytest.raises(ValueError, match=r"x must be \[n_nodes, 8\]"):
        product(torch.zeros(3, 7), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="species_index must be"):
        product(torch.zeros(3, 8), torch.zeros(2, dtype=torch.long))
    empty = product(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long))
    assert empty.shape == (0, 8)
