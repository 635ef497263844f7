"""Learn a Lorentz-invariant scattering amplitude with an EMLP for O(1,3), beside a plain MLP.

The data are random four-momenta ``p1..p4 ~ N(0, I_4) / 4`` of an electron-muon scattering
``e(p1) mu(p2) -> e(p3) mu(p4)`` and the target is its squared matrix element (without the
propagator factor; the masses taken as ``p.p`` since the random momenta are off shell), a
function of Minkowski products only (metric ``diag(1, -1, -1, -1)``):

    f = 4 [p1^a p3^b - eta^ab (p1.p3 - p1.p1)] [p2_a p4_b - eta_ab (p2.p4 - p2.p2)]

as in the particle-scattering task of Finzi, Welling & Wilson (ICML 2021). An EMLP for the
Lorentz group O(1,3) (``build("emlp", group="O(1,3)", rep_in="4*V", rep_out="1")``: every
weight lives in a basis solved from the group's generators) and an MLP with about as many
parameters train side by side on the same batches. The script prints their test errors and
their equivariance errors: how much the prediction changes when all four momenta are boosted
(random directions, rapidity up to ``--rapidity``) and rotated, and under sampled elements of
O(1,3) with parity and time reversal. The EMLP is invariant by construction (to float32
rounding as trained, to ~1e-13 when its weights are loaded into a float64 copy); the MLP is not.

    python examples/lorentz_scattering.py            # ~1-2 min on a laptop CPU
    python examples/lorentz_scattering.py --n-train 3000 --steps 4000 --channels 256
    python examples/lorentz_scattering.py --quick    # a few seconds: smoke test
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import Tensor, nn

from equivar.models import build
from equivar.symmetry import matrix_group

ETA = torch.diag(torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64))


def minkowski(a: Tensor, b: Tensor) -> Tensor:
    """``a.b`` for four-vectors ``[..., 4]`` -> ``[...]``."""
    return a[..., 0] * b[..., 0] - (a[..., 1:] * b[..., 1:]).sum(-1)


def amplitude(p: Tensor) -> Tensor:
    """The squared matrix element of the docstring: ``p [n, 4 particles, 4]`` -> ``[n]``."""
    p1, p2, p3, p4 = p.unbind(1)
    eta = ETA.to(p)
    electron = (
        p1[:, :, None] * p3[:, None, :]
        - (minkowski(p1, p3) - minkowski(p1, p1))[:, None, None] * eta
    )  # upper indices
    low2, low4 = p2 @ eta, p4 @ eta
    muon = (
        low2[:, :, None] * low4[:, None, :]
        - (minkowski(p2, p4) - minkowski(p2, p2))[:, None, None] * eta
    )  # lower indices
    return 4 * (electron * muon).sum((1, 2))


def dataset(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``x [n, 16]`` (four four-momenta, float64) and ``y [n, 1]``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g, dtype=torch.float64) / 4
    return x, amplitude(x.view(n, 4, 4))[:, None]


class Standardized(nn.Module):
    """``net(x / x_scale) * y_std + y_mean`` with one scale per four-vector, so a Lorentz
    transformation of the input commutes with the scaling (a per-component scale would not)."""

    def __init__(self, net: nn.Module, x: Tensor, y: Tensor) -> None:
        super().__init__()
        self.net = net
        dtype = next(net.parameters()).dtype
        scale = x.view(len(x), 4, 4).pow(2).mean((0, 2)).sqrt()  # [4]: one per particle
        self.register_buffer("x_scale", scale.repeat_interleave(4).to(dtype))
        self.register_buffer("y_mean", y.mean().to(dtype))
        self.register_buffer("y_std", y.std().to(dtype))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x / self.x_scale) * self.y_std + self.y_mean

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        return ((self.net(x / self.x_scale) - (y - self.y_mean) / self.y_std) ** 2).mean()


def mlp_like(params: int, width_in: int = 16, layers: int = 3) -> nn.Sequential:
    """A SiLU MLP ``16 -> w -> w -> w -> 1`` with about ``params`` parameters."""
    a, b, c = layers - 1, width_in + layers + 1, 1 - params
    width = max(4, round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)))
    sizes = [width_in] + [width] * layers
    mods: list[nn.Module] = []
    for i, o in zip(sizes[:-1], sizes[1:], strict=True):
        mods += [nn.Linear(i, o), nn.SiLU()]
    return nn.Sequential(*mods, nn.Linear(width, 1))


def random_lorentz(n: int, max_rapidity: float, generator: torch.Generator) -> Tensor:
    """``[n, 4, 4]`` float64: a boost along a random direction with rapidity uniform in
    ``[0, max_rapidity]`` times a random rotation."""
    u = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    phi = torch.rand(n, generator=generator, dtype=torch.float64) * max_rapidity
    boost = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    boost[:, 0, 0] = torch.cosh(phi)
    boost[:, 0, 1:] = boost[:, 1:, 0] = torch.sinh(phi)[:, None] * u
    boost[:, 1:, 1:] += (torch.cosh(phi) - 1)[:, None, None] * u[:, :, None] * u[:, None, :]
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]  # Haar-distributed
    q = q * torch.sign(torch.linalg.det(q))[:, None, None]  # a proper rotation
    rotation = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    rotation[:, 1:, 1:] = q
    return boost @ rotation


@torch.no_grad()
def invariance_error(model: nn.Module, x: Tensor, lorentz: Tensor) -> float:
    """``max |f(L x) - f(x)| / max |f(x) - mean f|`` over the samples ``x [n, 16]`` and the
    transformations ``lorentz [m, 4, 4]`` (each applied to all four momenta): the change under
    the group relative to how much the prediction varies over the data."""
    dtype = next(model.parameters()).dtype
    x = x.to(dtype)
    ref = model(x)  # [n, 1]
    worst = 0.0
    for mat in lorentz.to(dtype):
        moved = (x.view(-1, 4, 4) @ mat.T).reshape(-1, 16)  # p -> L p for every particle
        worst = max(worst, (model(moved) - ref).abs().max().item())
    return worst / (ref - ref.mean()).abs().max().item()


def train(models: dict[str, Standardized], x: Tensor, y: Tensor, steps: int, batch: int,
          lr: float, seed: int) -> dict[str, float]:  # fmt: skip
    """Adam with a cosine decay, the same batches for each model; returns CPU seconds each."""
    g = torch.Generator().manual_seed(seed)
    opts = {k: torch.optim.Adam(m.parameters(), lr=lr) for k, m in models.items()}
    seconds = dict.fromkeys(models, 0.0)
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        for name, model in models.items():
            t0 = time.process_time()
            for group in opts[name].param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            loss = model.loss(x[idx], y[idx])
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()
            seconds[name] += time.process_time() - t0
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            print(
                f"  step {step:5d}  EMLP loss {models['EMLP'].loss(x, y).item():.4g}  "
                f"MLP loss {models['MLP'].loss(x, y).item():.4g}",
                flush=True,
            )
    return seconds


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--channels", type=int, default=128, help="EMLP hidden size")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--rapidity", type=float, default=1.0, help="largest boost rapidity")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.steps, args.batch, args.channels = 64, 64, 30, 32, 32
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    x_train, y_train = dataset(args.n_train, seed=2 * args.seed + 1)
    x_test, y_test = dataset(args.n_test, seed=2 * args.seed + 2)
    options = dict(group="O(1,3)", rep_in="4*V", rep_out="1", num_channels=args.channels,
                   num_layers=3)  # fmt: skip
    emlp = build("emlp", dtype="float32", **options)
    n_params = sum(q.numel() for q in emlp.parameters())
    models = {"EMLP": Standardized(emlp, x_train, y_train),
              "MLP": Standardized(mlp_like(n_params), x_train, y_train)}  # fmt: skip
    print(
        f"EMLP {emlp.group.name}: {emlp.rep_in} -> {emlp.rep_out}, hidden "
        f"{emlp.blocks[0].rep_out}, {n_params} parameters; MLP "
        f"{sum(q.numel() for q in models['MLP'].parameters())} parameters"
    )
    print(f"training on {args.n_train} samples, {args.steps} steps of {args.batch}")
    seconds = train(models, x_train.float(), y_train.float(), args.steps, args.batch, args.lr,
                    args.seed)  # fmt: skip
    for m in models.values():
        m.eval()

    # the trained weights in a float64 copy (the basis is solved in float64 again)
    emlp64 = build("emlp", dtype="float64", **options)
    emlp64.load_state_dict(emlp.state_dict())
    exact = Standardized(emlp64, x_train, y_train).eval()

    with torch.no_grad():
        mse = {k: ((m(x_test.float()) - y_test.float()) ** 2).mean().item()
               for k, m in models.items()}  # fmt: skip
    print(
        f"\ntest MSE: EMLP {mse['EMLP']:.4g}   MLP {mse['MLP']:.4g}   (variance of the "
        f"target {y_test.var().item():.4g}; CPU s: EMLP {seconds['EMLP']:.0f}, MLP "
        f"{seconds['MLP']:.0f})"
    )
    g = torch.Generator().manual_seed(1234)
    boosts = random_lorentz(32, args.rapidity, g)
    group = matrix_group("O(1,3)").sample(32, g, scale=0.5)  # with parity and time reversal
    errors = {
        "EMLP float64": (invariance_error(exact, x_test, boosts),
                         invariance_error(exact, x_test, group)),
        "EMLP float32": (invariance_error(models["EMLP"], x_test, boosts),
                         invariance_error(models["EMLP"], x_test, group)),
        "MLP": (invariance_error(models["MLP"], x_test, boosts),
                invariance_error(models["MLP"], x_test, group)),
    }  # fmt: skip
    print(
        f"equivariance error max|f(L p) - f(p)| / max|f(p) - mean f| over {args.n_test} test "
        f"events:"
    )
    print(f"  {'model':14s} {'boosts+rotations':>18s} {'sampled O(1,3)':>16s}")
    for name, (boost_err, group_err) in errors.items():
        print(f"  {name:14s} {boost_err:18.3g} {group_err:16.3g}")
    print(f"equivariance error EMLP float64: {max(errors['EMLP float64']):.3g}")
    return {
        "emlp_mse": mse["EMLP"],
        "mlp_mse": mse["MLP"],
        "emlp64_error": max(errors["EMLP float64"]),
        "emlp32_error": max(errors["EMLP float32"]),
        "mlp_error": max(errors["MLP"]),
    }


if __name__ == "__main__":
    main()
