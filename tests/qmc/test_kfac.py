"""KFAC: the preconditioner is the inverse of the damped Kronecker-factored Fisher block (checked
against dense linear algebra), the exact damped Fisher inverse where the Fisher is exactly
Kronecker; the diagonal fallback, the norm constraint, a VMC run, the config and exact resumes."""

import copy
import io
import math

import pytest
import torch
from torch import nn

from equivar.qmc import VMCConfig, vmc
from equivar.qmc.kfac import KFAC
from equivar.qmc.optim import per_walker_gradients
from tests.qmc.conftest import random_walkers, small_wavefunction

F64 = torch.float64


class RepeatedLayerPsi(nn.Module):
    """``log|psi| = sum_p c . tanh(W r_p + b)``: one linear layer applied at every position
    ``p`` of a walker (like the stream layers), ``c`` fixed. r: [n_walkers, n_pos, 3]."""

    def __init__(self, out: int = 4) -> None:
        super().__init__()
        self.layer = nn.Linear(3, out)
        self.register_buffer("c", torch.linspace(-1.0, 1.5, out))

    def forward(self, r):
        logabs = (torch.tanh(self.layer(r)) * self.c).sum((-1, -2))  # [n_walkers]
        return torch.ones_like(logabs), logabs


class ProductPsi(nn.Module):
    """``log|psi| = c . (W a + b)`` with ``a = r[:, 0]``, ``c = r[:, 1]``: the output gradient is
    ``c``, independent of the input ``a``, so over walkers forming the product set of some a's
    and c's the Fisher is exactly ``2 E[c c^T] (x) E[a a^T]``."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 3)

    def forward(self, r):
        logabs = (r[:, 1] * self.layer(r[:, 0])).sum(-1)  # [n_walkers]
        return torch.ones_like(logabs), logabs


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _energy_gradient(model, r, e_local):
    """``2 E[(E_L - E) s]`` from torch.func per-walker scores (independent of KFAC's hooks)."""
    o = per_walker_gradients(model, r)  # [n_walkers, n_params]
    return 2 * ((e_local - e_local.mean())[:, None] * o).mean(0), o


def _one_step(model, r, e_local, lr=0.1, **options):
    """The first KFAC step's parameter change (no moving average yet, no norm constraint)."""
    before = _flat(model)
    opt = KFAC(model, lr=lr, decay=0.0, norm_constraint=0.0, clip_width=0.0, **options)
    opt.step(r, e_local)
    return _flat(model) - before, opt


def _close(got, want, tol=1e-10):
    err = (got - want).abs().max().item() / want.abs().max().item()
    assert err < tol, err


def _pi_damped(a_mat, g_mat, damping):
    pi = math.sqrt((a_mat.trace() / a_mat.shape[0]) / (g_mat.trace() / g_mat.shape[0]))
    eye = torch.eye
    return torch.kron(g_mat + damping**0.5 / pi * eye(g_mat.shape[0], dtype=F64),
                      a_mat + pi * damping**0.5 * eye(a_mat.shape[0], dtype=F64))


@pytest.mark.parametrize("mode", ["pi", "exact"])
def test_preconditioner_is_the_damped_kronecker_block_inverse(mode):
    torch.manual_seed(1)
    psi = RepeatedLayerPsi().to(F64)
    r = torch.randn(7, 2, 3, dtype=F64)  # 7 walkers, the layer applied at 2 positions each
    e_local = torch.randn(7, dtype=F64)
    damping, lr = 1e-2, 0.1
    # the factors, computed here from the explicit inputs and the analytic output gradient
    a = torch.cat([r, torch.ones(7, 2, 1, dtype=F64)], -1)  # [n_w, R, in + 1]
    with torch.no_grad():
        g = psi.c * (1 - torch.tanh(psi.layer(r)) ** 2)  # [n_w, R, out]
    a_mat = torch.einsum("nri,nrj->ij", a, a) / 14
    g_mat = 2 * torch.einsum("nro,nrp->op", g, g) / 7
    grad, _ = _energy_gradient(psi, r, e_local)
    grad_w = torch.cat([grad[:12].view(4, 3), grad[12:].view(4, 1)], 1)  # [W | b]
    if mode == "pi":
        block = _pi_damped(a_mat, g_mat, damping)
    else:
        block = torch.kron(g_mat, a_mat) + damping * torch.eye(16, dtype=F64)
    delta = torch.linalg.solve(block, grad_w.flatten()).view(4, 4)  # rows of [W | b] outermost
    want = -lr * torch.cat([delta[:, :3].flatten(), delta[:, 3]])
    got, opt = _one_step(psi, r, e_local, lr=lr, damping=damping, damping_mode=mode)
    _close(got, want)
    factors = opt.state_dict()["factors"]["layer"]
    torch.testing.assert_close(factors["A"], a_mat, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(factors["G"], g_mat, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("ema", [0.0, 0.5])
def test_factors_are_moving_averages(ema):
    """The first step takes the batch's factors; later ones ``ema old + (1 - ema) new``."""
    torch.manual_seed(4)
    psi = RepeatedLayerPsi().to(F64)
    opt = KFAC(psi, lr=0.0, cov_ema_decay=ema)
    batches = [torch.randn(5, 3, 3, dtype=F64) for _ in range(2)]
    stats = []
    for r in batches:
        opt.step(r, torch.randn(5, dtype=F64))
        a = torch.cat([r, torch.ones(5, 3, 1, dtype=F64)], -1)
        with torch.no_grad():
            g = psi.c * (1 - torch.tanh(psi.layer(r)) ** 2)
        stats.append((torch.einsum("nri,nrj->ij", a, a) / 15,
                      2 * torch.einsum("nro,nrp->op", g, g) / 5))
    factors = opt.state_dict()["factors"]["layer"]
    for key, i in (("A", 0), ("G", 1)):
        want = ema * stats[0][i] + (1 - ema) * stats[1][i]
        torch.testing.assert_close(factors[key], want, rtol=1e-12, atol=1e-14)


def test_exactly_kronecker_fisher_gives_the_exact_damped_fisher_inverse():
    torch.manual_seed(2)
    psi = ProductPsi().to(F64)
    inputs, grads = torch.randn(4, 3, dtype=F64), torch.randn(5, 3, dtype=F64)
    r = torch.stack([torch.stack([a, c]) for a in inputs for c in grads])  # [20, 2, 3]
    e_local = torch.randn(20, dtype=F64)
    damping = 1e-3
    grad, o = _energy_gradient(psi, r, e_local)
    # reorder the scores from (weight, bias) to rows of [W | b]: index (out, in + 1)
    idx = torch.cat([torch.arange(9).view(3, 3), torch.arange(9, 12).view(3, 1)], 1).flatten()
    fisher = 2 * o[:, idx].T @ o[:, idx] / 20  # the exact Fisher block, [12, 12]
    a_tilde = torch.cat([inputs, torch.ones(4, 1, dtype=F64)], 1)
    kron = torch.kron(2 * grads.T @ grads / 5, a_tilde.T @ a_tilde / 4)
    torch.testing.assert_close(fisher, kron, rtol=1e-12, atol=1e-13)  # exactly Kronecker
    assert torch.linalg.matrix_rank(fisher).item() == 12
    delta = torch.linalg.solve(fisher + damping * torch.eye(12, dtype=F64), grad[idx])
    want = torch.empty_like(delta)
    want[idx] = -0.1 * delta
    got, _ = _one_step(psi, r, e_local, damping=damping, damping_mode="exact")
    _close(got, want)


def test_wavefunction_layers_and_diagonal_fallback():
    """On the real ansatz: every linear layer (stream layers applied per electron and per pair,
    orbital maps) gets its Kronecker block, with the gradient of torch.func's scores; the
    envelopes and the Jastrow factor get ``grad / (2 E[s^2] + lambda)``."""
    psi = small_wavefunction("Li", hidden_one=6, hidden_two=3)
    r = random_walkers("Li", n_walkers=9)
    e_local = torch.randn(9, dtype=F64)
    damping, lr = 1e-3, 0.1
    grad, o = _energy_gradient(psi, r, e_local)
    reference = copy.deepcopy(psi)
    got, opt = _one_step(psi, r, e_local, lr=lr, damping=damping)
    state = opt.state_dict()
    modules = dict(reference.named_modules())
    assert set(state["factors"]) == {n for n, m in modules.items() if isinstance(m, nn.Linear)}
    assert set(state["diagonal"]) == {"head.envelopes.0.pi", "head.envelopes.0.sigma",
                                      "head.envelopes.1.pi", "head.envelopes.1.sigma",
                                      "jastrow.alpha"}
    want, offset = {}, 0
    for name, p in reference.named_parameters():
        want[name] = (slice(offset, offset + p.numel()), p.shape)
        offset += p.numel()
    for name, factors in state["factors"].items():
        w_sl, w_shape = want[f"{name}.weight"]
        b_sl, _ = want[f"{name}.bias"]
        grad_w = torch.cat([grad[w_sl].view(w_shape), grad[b_sl].view(-1, 1)], 1)
        block = _pi_damped(factors["A"], factors["G"], damping)
        delta = torch.linalg.solve(block, grad_w.flatten()).view(grad_w.shape)
        _close(got[w_sl], -lr * delta[:, :-1].flatten())
        _close(got[b_sl], -lr * delta[:, -1])
    for name, fisher in state["diagonal"].items():
        sl, shape = want[name]
        torch.testing.assert_close(fisher.flatten(), 2 * o[:, sl].square().mean(0))
        _close(got[sl], -lr * grad[sl] / (2 * o[:, sl].square().mean(0) + damping))


def test_norm_constraint_caps_the_step():
    psi = small_wavefunction("He", hidden_one=4, hidden_two=2, n_determinants=1)
    r = random_walkers("He", n_walkers=8)
    e_local = 3 * torch.randn(8, dtype=F64)
    grad, _ = _energy_gradient(psi, r, e_local)
    lr = 0.1
    free, _ = _one_step(copy.deepcopy(psi), r, e_local, lr=lr)
    fisher_norm = -lr * (grad @ free).item()  # lr^2 g^T F^-1 g of the unconstrained step
    bound = 1e-3 * fisher_norm
    capped_psi, loose_psi = copy.deepcopy(psi), copy.deepcopy(psi)
    before = _flat(psi)
    KFAC(capped_psi, lr=lr, decay=0.0, norm_constraint=bound, clip_width=0.0).step(r, e_local)
    capped = _flat(capped_psi) - before
    _close(capped, free * math.sqrt(bound / fisher_norm), tol=1e-9)
    assert -lr * (grad @ capped).item() * math.sqrt(bound / fisher_norm) == pytest.approx(bound)
    KFAC(loose_psi, lr=lr, decay=0.0, norm_constraint=10 * fisher_norm,
         clip_width=0.0).step(r, e_local)
    _close(_flat(loose_psi) - before, free)


def test_momentum_adds_the_previous_step():
    psi = small_wavefunction("He", hidden_one=4, hidden_two=2, n_determinants=1)
    r = random_walkers("He", n_walkers=8)
    opt = KFAC(psi, decay=0.0, norm_constraint=0.0, momentum=0.5)
    start = _flat(psi)
    opt.step(r, torch.randn(8, dtype=F64))
    first, mid = _flat(psi) - start, _flat(psi)
    twin = copy.deepcopy(psi)  # the same parameters and curvature, without momentum
    plain = KFAC(twin, decay=0.0, norm_constraint=0.0, momentum=0.0)
    plain.load_state_dict(opt.state_dict())
    e2 = torch.randn(8, dtype=F64)
    opt.step(r, e2)
    plain.step(r, e2)
    _close(_flat(psi) - mid, _flat(twin) - mid + 0.5 * first)


def test_state_dict_round_trip_resumes_identically():
    torch.manual_seed(3)
    psi = small_wavefunction("Li", hidden_one=6, hidden_two=3)
    opt = KFAC(psi, lr=0.05, momentum=0.3, cov_ema_decay=0.9)
    for seed in range(2):
        opt.step(random_walkers("Li", n_walkers=12, seed=seed), torch.randn(12, dtype=F64))
    buffer = io.BytesIO()
    torch.save({"model": psi.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    clone = small_wavefunction("Li", hidden_one=6, hidden_two=3)
    clone.load_state_dict(saved["model"])
    resumed = KFAC(clone, lr=0.05, momentum=0.3, cov_ema_decay=0.9)
    resumed.load_state_dict(saved["opt"])
    r, e_local = random_walkers("Li", n_walkers=12, seed=5), torch.randn(12, dtype=F64)
    opt.step(r, e_local)
    resumed.step(r, e_local)
    torch.testing.assert_close(_flat(clone), _flat(psi), rtol=1e-12, atol=1e-14)
    assert resumed.iteration == opt.iteration == 3
    other = KFAC(small_wavefunction("He"))
    with pytest.raises(ValueError, match="factor|matches no parameter"):
        other.load_state_dict(saved["opt"])


def test_bad_options_raise():
    psi = small_wavefunction("He", hidden_one=4, hidden_two=2, n_determinants=1)
    for options, message in [({"damping": 0.0}, "damping"), ({"momentum": 1.0}, "momentum"),
                             ({"cov_ema_decay": 1.0}, "cov_ema_decay"),
                             ({"damping_mode": "eigen"}, "damping_mode")]:
        with pytest.raises(ValueError, match=message):
            KFAC(psi, **options)
    with pytest.raises(ValueError, match="e_local"):
        KFAC(psi).step(random_walkers("He", n_walkers=4), torch.zeros(3, dtype=F64))


def test_config_selects_kfac_with_its_defaults():
    cfg = VMCConfig.from_dict({"optimizer": "kfac"})
    assert (cfg.lr, cfg.momentum, cfg.max_norm, cfg.cov_ema_decay) == (0.05, 0.0, 1e-3, 0.95)
    sr = VMCConfig.from_dict({})
    assert (sr.optimizer, sr.momentum, sr.max_norm) == ("sr", 0.9, 1e-2)  # unchanged
    with pytest.raises(ValueError, match="did you mean 'cov_ema_decay'"):
        VMCConfig.from_dict({"optimizer": "kfac", "cov_ema_decy": 0.9})
    with pytest.raises(ValueError, match="cov_ema_decay"):
        VMCConfig.from_dict({"optimizer": "kfac", "cov_ema_decay": 1.5})
    with pytest.raises(ValueError, match="momentum must be a number"):
        VMCConfig.from_dict({"optimizer": "kfac", "momentum": "fast"})


def test_short_kfac_run_on_helium_lowers_the_energy():
    result = vmc("He", model={"preset": "S"}, optimizer="kfac", iterations=40, walkers=128,
                 burn_in=100, eval_iterations=16, log_every=5)
    energy = result.history["energy"]
    first, last = sum(energy[:5]) / 5, sum(energy[-5:]) / 5
    assert last < first - 0.2, (first, last)
    assert result.energy < first - 0.2 and result.energy > -2.95


def test_kfac_run_resumes_exactly(tmp_path):
    common = dict(model={"preset": "S", "hidden_one": 8, "hidden_two": 2, "n_determinants": 2},
                  walkers=16, burn_in=10, eval_iterations=4, steps=2, checkpoint_every=2,
                  optimizer="kfac", momentum=0.5)
    full = vmc("Li", iterations=4, checkpoint=tmp_path / "full.pt", **common)
    vmc("Li", iterations=3, checkpoint=tmp_path / "part.pt", **common)
    resumed = vmc("Li", iterations=4, checkpoint=tmp_path / "part.pt", resume=True, **common)
    torch.testing.assert_close(_flat(resumed.wavefunction), _flat(full.wavefunction),
                               rtol=1e-12, atol=1e-14)
    assert resumed.history["energy"] == pytest.approx(full.history["energy"], rel=1e-12)


def test_cli_runs_kfac(tmp_path):
    from equivar.cli import main

    assert main(["vmc", "--system", "He", "--optimizer", "kfac", "--iterations", "2",
                 "--walkers", "16", "--burn-in", "5", "--eval-iterations", "4", "--no-progress",
                 "--no-plot", "--output", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "result.json").is_file()
