"""The Psiformer ansatz (``build("wavefunction", architecture="psiformer")``): antisymmetric
under same-spin swaps, invariant under moving electrons and nuclei together (translations always,
rotations and reflections with ``features="invariant"``), the cusp Jastrow outside the
determinants, strict option checks, and the VMC driver (energy, checkpoints, pre-training)."""

import pytest
import torch

from equivar.models import build
from equivar.models.psiformer import Psiformer
from equivar.qmc import (
    MetropolisSampler,
    Molecule,
    atom,
    load_checkpoint,
    load_wavefunction,
    local_energy,
    pretrain_orbitals,
    vmc,
)
from equivar.testing import assert_antisymmetric
from tests.conftest import tolerance
from tests.qmc.conftest import random_walkers

TINY = {"architecture": "psiformer", "preset": "S", "num_layers": 2, "num_heads": 2,
        "head_dim": 4, "n_determinants": 2}  # fmt: skip


def psiformer(system, dtype=torch.float64, **options):
    return build("wavefunction", system=system, dtype=dtype, **{**TINY, **options})


def _moved(system: Molecule, positions: torch.Tensor) -> Molecule:
    return Molecule(list(system.charges), positions.tolist(), charge=system.charge,
                    spin=system.spin)  # fmt: skip


def _same_parameters(a, b) -> None:
    """Give ``b`` the parameters of ``a`` (the nuclei, a buffer, stay ``b``'s own)."""
    b.load_state_dict({k: v for k, v in a.state_dict().items() if k != "nuclei"}, strict=False)


LIH = Molecule(["Li", "H"], [[0.1, -0.2, 0.0], [0.3, 0.4, 3.0]])


@pytest.mark.parametrize("system", ["Li", "Be", "N", LIH])
@pytest.mark.parametrize("variant", [{}, {"layer_norm": True, "mlp_hidden": 12}])
def test_every_same_spin_swap_flips_the_sign(system, variant):
    psi = psiformer(system, **variant)
    r = random_walkers(system, n_walkers=5)
    errors = assert_antisymmetric(psi, r)
    assert errors["transposition"]["wrong_signs"] == 0
    assert errors["transposition"]["logabs"] <= 1e-10
    sign, logabs = psi(r)
    s, la = psi(r[:, [1, 0, *range(2, r.shape[1])]])  # two spin-up electrons swapped
    assert torch.equal(s, -sign)
    torch.testing.assert_close(la, logabs, rtol=1e-10, atol=1e-12)


def test_antisymmetry_in_both_dtypes(dtype):
    psi = psiformer("B", dtype=dtype, n_determinants=3)
    assert_antisymmetric(psi, random_walkers("B", dtype=dtype), rtol=tolerance(dtype))


def test_the_trunk_permutes_its_rows_with_the_electrons():
    trunk = Psiformer(5, num_layers=2, num_heads=2, head_dim=3, layer_norm=True).double()
    x = torch.randn(4, 6, 5, dtype=torch.float64)
    perm = torch.randperm(6)
    torch.testing.assert_close(trunk(x[:, perm]), trunk(x)[:, perm], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("features", ["cartesian", "invariant"])
def test_translating_electrons_and_nuclei_together_changes_nothing(dtype, features):
    shift = torch.tensor([0.7, -1.3, 2.1], dtype=torch.float64)
    moved = _moved(LIH, torch.tensor(LIH.positions, dtype=torch.float64) + shift)
    a, b = psiformer(LIH, dtype, features=features), psiformer(moved, dtype, features=features)
    _same_parameters(a, b)
    r = random_walkers(LIH, dtype=dtype)
    (sa, la), (sb, lb) = a(r), b(r + shift.to(dtype))
    assert torch.equal(sa, sb)
    torch.testing.assert_close(lb, la, rtol=tolerance(dtype), atol=tolerance(dtype))


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
def test_invariant_features_rotate_with_the_molecule(dtype, proper):
    """psi(Q r; Q R) = psi(r; R) for every orthogonal Q: same parameters, moved nuclei."""
    q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64)).Q
    q = q * torch.linalg.det(q) * (1 if proper else -1)
    moved = _moved(LIH, torch.tensor(LIH.positions, dtype=torch.float64) @ q.T)
    a = psiformer(LIH, dtype, features="invariant", layer_norm=True)
    b = psiformer(moved, dtype, features="invariant", layer_norm=True)
    _same_parameters(a, b)
    r = random_walkers(LIH, dtype=dtype)
    (sa, la), (sb, lb) = a(r), b(r @ q.T.to(dtype))
    assert torch.equal(sa, sb)
    torch.testing.assert_close(lb, la, rtol=tolerance(dtype), atol=tolerance(dtype))


def test_invariant_features_make_an_atom_rotation_invariant():
    psi = psiformer("Be", features="invariant")
    r = random_walkers("Be")
    q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64)).Q
    sign, logabs = psi(r)
    for rot in (q, -q):
        s, la = psi(r @ rot.T)
        assert torch.equal(s, sign)
        torch.testing.assert_close(la, logabs, rtol=1e-10, atol=1e-12)


def test_cartesian_features_are_not_rotation_invariant():
    """The paper's inputs (vectors r_i - R_I): documented, and why ``"invariant"`` exists."""
    psi = psiformer("Be")
    r = random_walkers("Be")
    q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64)).Q
    assert (psi(r @ q.T)[1] - psi(r)[1]).abs().max() > 1e-6


@pytest.mark.parametrize("features", ["cartesian", "invariant"])
def test_relabelling_equal_nuclei_with_their_parameters_changes_nothing(features):
    """Per-nucleus parameters (input embedding, envelopes) travel with their nucleus: swapping
    two H nuclei and their parameters gives the same wavefunction."""
    h3 = Molecule(["H", "H", "H"], [[0.0, 0.0, 0.0], [1.6, 0.2, 0.0], [0.5, 1.4, 0.3]])
    perm = [2, 0, 1]
    swapped = _moved(h3, torch.tensor(h3.positions, dtype=torch.float64)[perm])
    a, b = psiformer(h3, features=features), psiformer(swapped, features=features)
    per = 4 if features == "cartesian" else 1  # input columns per nucleus (spin comes last)
    cols = [p * per + c for p in perm for c in range(per)] + [3 * per]
    state = {k: v for k, v in a.state_dict().items() if k != "nuclei"}
    state["trunk.embedding.weight"] = state["trunk.embedding.weight"][:, cols]
    for k in [k for k in state if "envelopes" in k]:  # [n_nuclei, n_orbitals]
        state[k] = state[k][perm]
    b.load_state_dict(state, strict=False)
    r = random_walkers(h3)
    (sa, la), (sb, lb) = a(r), b(r)
    assert torch.equal(sa, sb)
    torch.testing.assert_close(lb, la, rtol=1e-10, atol=1e-12)


def test_the_jastrow_sits_outside_the_determinants():
    with_j = psiformer("Li")
    without = psiformer("Li", jastrow=False)
    without.load_state_dict({k: v for k, v in with_j.state_dict().items()
                             if not k.startswith("jastrow")})  # fmt: skip
    r = random_walkers("Li")
    (s1, l1), (s0, l0) = with_j(r), without(r)
    d_ee = torch.cdist(r, r)
    assert torch.equal(s1, s0)
    torch.testing.assert_close(l1 - l0, with_j.jastrow(d_ee), rtol=1e-10, atol=1e-12)


def test_the_opposite_spin_cusp_comes_from_the_jastrow_alone():
    """Averaged over the two directions of approach, d log|psi| / d r_12 at coalescence is the
    Kato cusp 1/2 with the Jastrow and 0 without (no e-e distance enters the determinants)."""
    r0 = random_walkers("He", n_walkers=3, seed=2)
    u = torch.nn.functional.normalize(torch.randn(3, 3, dtype=torch.float64), dim=-1)
    h = 1e-5

    def slope(psi):
        total = 0.0
        for direction in (u, -u):
            logs = []
            for step in (h, 2 * h):
                r = r0.clone()
                r[:, 1] = r0[:, 0] + step * direction
                logs.append(psi(r)[1])
            total = total + (logs[1] - logs[0]) / h
        return total / 2

    with_j = psiformer("He")
    without = psiformer("He", jastrow=False)
    torch.testing.assert_close(slope(with_j), torch.full((3,), 0.5, dtype=torch.float64),
                               atol=1e-3, rtol=0)  # fmt: skip
    assert slope(without).abs().max() < 1e-3


@pytest.mark.parametrize("options, message", [
    ({"architecture": "psiformr"}, "did you mean 'psiformer'"),
    ({"architecture": "psiformer", "hidden_one": 8}, "apply to architecture='ferminet' only"),
    ({"num_heads": 2}, "apply to architecture='psiformer' only"),
    ({"architecture": "psiformer", "particles": "bosons"}, "fermions only"),
    ({"architecture": "psiformer", "num_heads": 0}, "num_heads must be a positive integer"),
    ({"architecture": "psiformer", "head_dim": 2.5}, "head_dim must be a positive integer"),
    ({"architecture": "psiformer", "mlp_hidden": -1}, "mlp_hidden must be a positive"),
    ({"architecture": "psiformer", "layer_norm": "yes"}, "layer_norm must be True or False"),
    ({"architecture": "psiformer", "features": "polar"}, "features must be one of"),
    ({"architecture": "psiformer", "preset": "XL"}, "unknown preset"),
    ({"architecture": "psiformer", "num_head": 2}, "did you mean 'num_heads'"),
])  # fmt: skip
def test_bad_options_raise_with_a_clear_message(options, message):
    with pytest.raises(ValueError, match=message):
        build("wavefunction", system="Li", **options)


def test_config_rebuilds_the_same_model_and_ferminet_configs_are_unchanged():
    psi = psiformer("Li", layer_norm=True, mlp_hidden=8)
    assert psi.config["architecture"] == "psiformer" and psi.config["mlp_hidden"] == 8
    again = build(psi.config["name"], **{k: v for k, v in psi.config.items() if k != "name"})
    again.load_state_dict(psi.state_dict())
    r = random_walkers("Li")
    torch.testing.assert_close(again(r)[1], psi(r)[1], rtol=0, atol=0)
    ferminet = build("wavefunction", system="Li", preset="S", architecture="ferminet")
    assert "architecture" not in ferminet.config  # old checkpoints still match and resume
    assert type(ferminet).__name__ == "WavefunctionModel"


def test_local_energy_methods_agree():
    """The forward-over-backward Laplacian (vmap + jvp through attention and softmax) equals
    the plain double-backward one."""
    li = atom("Li")
    psi = psiformer(li, layer_norm=True)
    r = random_walkers(li, n_walkers=4)
    fast = local_energy(psi, r, li)
    slow = local_energy(psi, r, li, method="double_backward")
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, slow, rtol=1e-8, atol=1e-8)


def test_pretraining_fits_the_orbitals():
    pytest.importorskip("pyscf")
    li = atom("Li")
    psi = psiformer(li)
    assert [tuple(o.shape) for o in psi.orbitals(random_walkers(li, n_walkers=3))] == [
        (3, 2, 2, 2), (3, 2, 1, 1)]  # fmt: skip
    sampler = MetropolisSampler(li, 32, dtype=torch.float64, seed=0)
    losses = pretrain_orbitals(psi, li, sampler, 30, lr=1e-2)
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


def test_short_vmc_run_on_helium_lowers_the_energy():
    result = vmc("He", model=TINY, iterations=30, walkers=64, burn_in=50, steps=5,
                 eval_iterations=8, log_every=5)  # fmt: skip
    energy = result.history["energy"]
    assert len(energy) == 30 and all(torch.isfinite(torch.tensor(energy)))
    first, last = sum(energy[:5]) / 5, sum(energy[-5:]) / 5
    assert last < first - 0.1, (first, last)
    assert -3.1 < result.energy < first  # near He's -2.9037, within the noise of 64 walkers


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_checkpoint_resumes_exactly_and_rebuilds_the_model(tmp_path):
    common = dict(model=TINY, walkers=16, burn_in=10, eval_iterations=4, steps=3,
                  checkpoint_every=2)  # fmt: skip
    full = vmc("Li", iterations=4, checkpoint=tmp_path / "full.pt", **common)
    vmc("Li", iterations=2, checkpoint=tmp_path / "part.pt", **common)
    resumed = vmc("Li", iterations=4, checkpoint=tmp_path / "part.pt", resume=True, **common)
    assert torch.equal(_params(full.wavefunction), _params(resumed.wavefunction))
    assert full.history["energy"] == resumed.history["energy"]
    assert full.eval_energies == resumed.eval_energies
    record = load_checkpoint(tmp_path / "part.pt")
    assert record["config"]["model"]["architecture"] == "psiformer"
    model = load_wavefunction(tmp_path / "full.pt")
    r = random_walkers("Li", n_walkers=4)
    torch.testing.assert_close(model(r)[1], full.wavefunction(r)[1], rtol=0, atol=0)
