"""Neural wavefunctions for VMC: ``build("wavefunction", system=..., ...)``.

Two trunks (``architecture=``): ``"ferminet"`` (default, :class:`WavefunctionModel`):
FermiNet's permutation-equivariant one- and two-electron streams; ``"psiformer"``
(:class:`PsiformerWavefunction`): per-electron features and spin, then multi-head
self-attention over the electrons (:mod:`equivar.models.psiformer`). Then a head:
fermions get :class:`~equivar.heads.SlaterDeterminantHead` (orbitals x envelopes, one determinant
per spin, several combined in the log domain) times the cusp Jastrow
:class:`~equivar.heads.ElectronCuspJastrow`; bosons get the invariant
:class:`~equivar.heads.SymmetricHead`. Atomic units throughout; the model maps electron positions
``r`` [n_walkers, n_elec, 3] (spin-up first) to ``(sign, log|psi|)``, each [n_walkers].

Input features (``features=``; Psiformer uses the electron-nucleus ones only, plus the spin):
    ``"cartesian"`` (FermiNet): ``r_i - R_I``, ``|r_i - R_I|``, ``r_i - r_j``, ``|r_i - r_j|``.
        Any state can be represented, but ``log|psi|`` is not rotation invariant.
    ``"invariant"``: the distances only. ``psi(Q r; Q R) = psi(r; R)`` exactly for every rotation
        and reflection ``Q``, so for an atom ``log|psi|`` is O(3) invariant. Exact for states
        that are symmetric under the rotations and reflections fixing every nucleus: S atoms of
        even parity (He, Li, Be, N, Ne ...) and Sigma+ states of linear molecules (H2, LiH), and
        in general every totally symmetric ground state; *not* for P atoms (B, C, O, F).
    Vectors and distances are rescaled by ``log(1 + d) / d`` (Psiformer) so far-away electrons
    give bounded inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

import torch
from torch import nn

from equivar._suggest import did_you_mean
from equivar.heads.antisymmetric import SlaterDeterminantHead
from equivar.heads.jastrow import ElectronCuspJastrow
from equivar.heads.symmetric import SymmetricHead
from equivar.models.build import check_options, construct
from equivar.models.psiformer import PSIFORMER_PRESETS, Psiformer
from equivar.models.systems import Molecule, get_system

#: ansatz sizes: determinants, one- and two-electron stream widths, layers
PRESETS: dict[str, dict[str, Any]] = {
    "S": dict(n_determinants=4, hidden_one=32, hidden_two=8, num_layers=2),
    "M": dict(n_determinants=8, hidden_one=128, hidden_two=16, num_layers=3),
    "L": dict(n_determinants=16, hidden_one=256, hidden_two=32, num_layers=4),  # FermiNet's
}
FEATURES = ("cartesian", "invariant")
PARTICLES = ("fermions", "bosons")


def _log_rescale(vec: torch.Tensor, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(v log(1+d)/d, log(1+d))``: direction kept, length compressed to grow like log d."""
    scale = torch.log1p(dist) / dist.clamp_min(1e-12)  # [..., 1]; -> 1 as d -> 0
    return vec * scale, torch.log1p(dist)


def pair_geometry(r: torch.Tensor, nuclei: torch.Tensor):
    """Electron-nucleus and electron-electron displacements and distances.

    The diagonal ``|r_i - r_i| = 0`` is computed as ``|0 + 1| * 0`` so its gradient is finite.

    Shapes:
        r: [n_walkers, n_elec, 3], nuclei: [n_nuclei, 3] -> r_en [n_walkers, n_elec, n_nuclei, 3],
        d_en [n_walkers, n_elec, n_nuclei, 1], r_ee [n_walkers, n_elec, n_elec, 3],
        d_ee [n_walkers, n_elec, n_elec, 1]
    """
    r_en = r.unsqueeze(2) - nuclei  # [n_walkers, n_elec, n_nuclei, 3]
    d_en = torch.linalg.vector_norm(r_en, dim=-1, keepdim=True)
    r_ee = r.unsqueeze(2) - r.unsqueeze(1)  # [n_walkers, n_elec, n_elec, 3]; r_i - r_j
    eye = torch.eye(r.shape[1], dtype=r.dtype, device=r.device).unsqueeze(-1)  # [n, n, 1]
    d_ee = torch.linalg.vector_norm(r_ee + eye, dim=-1, keepdim=True) * (1.0 - eye)
    return r_en, d_en, r_ee, d_ee


class ElectronStreamLayer(nn.Module):
    r"""One FermiNet layer: ``h_i <- tanh(V [h_i, <h_j>_s, <h_ij>_s] + b) (+ h_i)``, ``h_ij``
    likewise from ``h_ij`` alone, where ``<.>_s`` is the mean over the electrons ``j`` of group
    ``s``. Equivariant under permutations within each group (the means are invariant).

    Args:
        one_in, two_in: input widths; one_out, two_out: output widths (``two_out=0``: the
            two-electron stream passes through unchanged, for the last layer).
        groups: sizes of the particle groups (``(n_up, n_down)``, or ``(n,)`` for bosons).

    Shapes:
        h_one: [n_walkers, n_elec, one_in], h_two: [n_walkers, n_elec, n_elec, two_in]
        -> [n_walkers, n_elec, one_out], [n_walkers, n_elec, n_elec, two_out]
    """

    def __init__(self, one_in: int, two_in: int, one_out: int, two_out: int,
                 groups: Sequence[int]) -> None:
        super().__init__()
        self.groups = tuple(int(g) for g in groups if g > 0)
        k = len(self.groups)
        self.one = nn.Linear(one_in * (1 + k) + two_in * k, one_out)
        # the last layer's two-electron output would be unused: none (two_out = 0)
        self.two = nn.Linear(two_in, two_out) if two_out > 0 else None
        self.residual = (one_in == one_out, two_in == two_out)

    def forward(self, h_one: torch.Tensor, h_two: torch.Tensor):
        pieces = [h_one]
        for part in torch.split(h_one, self.groups, dim=1):
            pieces.append(part.mean(1, keepdim=True).expand_as(h_one))  # [n_w, n_elec, one_in]
        for part in torch.split(h_two, self.groups, dim=2):
            pieces.append(part.mean(2))  # [n_walkers, n_elec, two_in]
        one = torch.tanh(self.one(torch.cat(pieces, dim=-1)))
        one = one + h_one if self.residual[0] else one
        if self.two is None:
            return one, h_two
        two = torch.tanh(self.two(h_two))
        return one, two + h_two if self.residual[1] else two


class NeuralWavefunction(nn.Module):
    """What every architecture shares: the system (buffers ``nuclei``, ``charges``), the head
    (determinants of orbitals x envelopes, or the bosonic head), the cusp Jastrow outside it,
    and ``forward``/``orbitals`` on top of a subclass's :meth:`streams`.

    Subclasses call ``super().__init__``, build their trunk, then :meth:`_init_head` (in this
    order: the parameter order is part of a checkpoint's optimiser state).

    Attributes:
        n_up, n_down, n_elec: electrons of each spin.
        config: the plain-data options that rebuild the model (``build(config["name"], **rest)``).

    Shapes:
        r: [n_walkers, n_elec, 3] -> sign [n_walkers], logabs [n_walkers]
    """

    def __init__(self, system: dict, config: dict) -> None:
        super().__init__()
        mol = Molecule.from_dict(system)
        self.system, self.config = mol, config
        self.n_up, self.n_down, self.n_elec = mol.n_up, mol.n_down, mol.n_elec
        charges, nuclei = mol.tensors(dtype=torch.get_default_dtype())
        self.register_buffer("nuclei", nuclei.clone())  # [n_nuclei, 3]
        self.register_buffer("charges", charges.clone())  # [n_nuclei]

    def _init_head(self, num_features: int, n_determinants: int, particles: str, jastrow: bool,
                   envelope: str) -> None:
        m = self.system.n_nuclei
        if particles == "fermions":
            self.head = SlaterDeterminantHead(num_features, self.n_up, self.n_down, m,
                                              n_determinants, envelope)
            self.jastrow = ElectronCuspJastrow(self.n_up, self.n_down) if jastrow else None
        else:
            self.head = SymmetricHead(num_features, m)
            self.jastrow = (ElectronCuspJastrow(self.n_elec, 0, cusp_parallel=0.5)
                            if jastrow else None)

    def _check(self, r: torch.Tensor) -> None:
        if r.dim() != 3 or r.shape[1:] != (self.n_elec, 3):
            raise ValueError(f"r must have shape [n_walkers, n_elec={self.n_elec}, 3] (bohr, "
                             f"spin-up first), got {list(r.shape)}")
        if r.dtype != self.nuclei.dtype:
            raise ValueError(f"r is {r.dtype} but the wavefunction is {self.nuclei.dtype}; "
                             "convert one of them")

    def streams(self, r: torch.Tensor):
        """Per-electron features after the trunk, and the distances the heads need.

        Returns:
            ``h [n_walkers, n_elec, num_features]``, ``d_en [n_walkers, n_elec, n_nuclei]``,
            ``d_ee [n_walkers, n_elec, n_elec]``.
        """
        raise NotImplementedError

    def orbitals(self, r: torch.Tensor) -> list[torch.Tensor]:
        """Orbital matrices per spin, ``[n_walkers, n_det, n_s, n_s]`` (for pre-training)."""
        if self.particles != "fermions":
            raise ValueError("a bosonic wavefunction has no orbitals")
        h, d_en, _ = self.streams(r)
        return self.head.orbitals(h, d_en)

    def forward(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, d_en, d_ee = self.streams(r)
        sign, logabs = self.head(h, d_en)
        if self.jastrow is not None:
            logabs = logabs + self.jastrow(d_ee)
        return sign, logabs

    def extra_repr(self) -> str:
        return (f"system={self.system.name}, n_up={self.n_up}, n_down={self.n_down}, "
                f"features={self.features!r}, particles={self.particles!r}")


class WavefunctionModel(NeuralWavefunction):
    """FermiNet-style neural wavefunction of a :class:`~equivar.qmc.Molecule`; build it with
    :func:`build_wavefunction` (see the module docstring for the ansatz).

    Shapes:
        r: [n_walkers, n_elec, 3] -> sign [n_walkers], logabs [n_walkers]
    """

    def __init__(self, *, system: dict, n_determinants: int, hidden_one: int, hidden_two: int,
                 num_layers: int, features: str, particles: str, jastrow: bool,
                 envelope: str, config: dict) -> None:
        super().__init__(system, config)
        self.features, self.particles = features, particles
        m = self.system.n_nuclei
        one_in, two_in = (4 * m, 4) if features == "cartesian" else (m, 1)
        groups = (self.n_up, self.n_down) if particles == "fermions" else (self.n_elec,)
        widths = [(one_in, two_in)] + [(hidden_one, hidden_two)] * (num_layers - 1) + [
            (hidden_one, 0)]
        self.layers = nn.ModuleList(
            ElectronStreamLayer(*widths[i], *widths[i + 1], groups) for i in range(num_layers))
        self._init_head(hidden_one, n_determinants, particles, jastrow, envelope)

    def streams(self, r: torch.Tensor):
        """Per-electron features after the last layer, and the distances the heads need.

        Returns:
            ``h [n_walkers, n_elec, hidden_one]``, ``d_en [n_walkers, n_elec, n_nuclei]``,
            ``d_ee [n_walkers, n_elec, n_elec]``.
        """
        self._check(r)
        r_en, d_en, r_ee, d_ee = pair_geometry(r, self.nuclei)
        if self.features == "cartesian":
            v_en, s_en = _log_rescale(r_en, d_en)
            h_one = torch.cat([v_en, s_en], -1).flatten(2)  # [n_walkers, n_elec, 4 n_nuclei]
            h_two = torch.cat(_log_rescale(r_ee, d_ee), -1)  # [n_walkers, n_elec, n_elec, 4]
        else:
            h_one = torch.log1p(d_en).flatten(2)  # [n_walkers, n_elec, n_nuclei]
            h_two = torch.log1p(d_ee)  # [n_walkers, n_elec, n_elec, 1]
        for layer in self.layers:
            h_one, h_two = layer(h_one, h_two)
        return h_one, d_en.squeeze(-1), d_ee.squeeze(-1)


class PsiformerWavefunction(NeuralWavefunction):
    """Psiformer neural wavefunction (``build("wavefunction", architecture="psiformer")``).

    Per-electron inputs only: ``r_i - R_I`` and ``|r_i - R_I|`` log-rescaled (``features=
    "cartesian"``, the paper's) or the distances alone (``"invariant"``), and the spin
    (+1 up, -1 down); the :class:`~equivar.models.psiformer.Psiformer` attention trunk; the
    determinant head (one block per spin); the cusp Jastrow outside the determinants.

    Shapes:
        r: [n_walkers, n_elec, 3] -> sign [n_walkers], logabs [n_walkers]
    """

    def __init__(self, *, system: dict, n_determinants: int, num_layers: int, num_heads: int,
                 head_dim: int, mlp_hidden: int | None, layer_norm: bool, features: str,
                 jastrow: bool, envelope: str, architecture: str, config: dict) -> None:
        super().__init__(system, config)
        self.features, self.particles = features, "fermions"
        m = self.system.n_nuclei
        spin = torch.tensor([1.0] * self.n_up + [-1.0] * self.n_down)
        self.register_buffer("spin", spin.unsqueeze(-1), persistent=False)  # [n_elec, 1]
        in_features = (4 * m if features == "cartesian" else m) + 1
        self.trunk = Psiformer(in_features, num_layers=num_layers, num_heads=num_heads,
                               head_dim=head_dim, mlp_hidden=mlp_hidden, layer_norm=layer_norm)
        self._init_head(self.trunk.hidden, n_determinants, "fermions", jastrow, envelope)

    def streams(self, r: torch.Tensor):
        """Attention-trunk features ``h [n_walkers, n_elec, num_heads * head_dim]``, ``d_en``,
        ``d_ee`` (see :meth:`NeuralWavefunction.streams`)."""
        self._check(r)
        r_en, d_en, _, d_ee = pair_geometry(r, self.nuclei)
        if self.features == "cartesian":
            v_en, s_en = _log_rescale(r_en, d_en)
            x = torch.cat([v_en, s_en], -1).flatten(2)  # [n_walkers, n_elec, 4 n_nuclei]
        else:
            x = torch.log1p(d_en).flatten(2)  # [n_walkers, n_elec, n_nuclei]
        spin = self.spin.expand(*x.shape[:-1], 1)  # [n_walkers, n_elec, 1]
        h = self.trunk(torch.cat([x, spin], -1))  # [n_walkers, n_elec, hidden]
        return h, d_en.squeeze(-1), d_ee.squeeze(-1)

    def extra_repr(self) -> str:
        return "architecture='psiformer', " + super().extra_repr()


#: wavefunction trunks: FermiNet's one- and two-electron streams, Psiformer's self-attention
ARCHITECTURES = ("ferminet", "psiformer")
_COMMON_OPTIONS = ("system", "preset", "architecture", "n_determinants", "num_layers", "features",
                   "jastrow", "envelope", "dtype", "particles")
#: the options of one architecture only
_ARCHITECTURE_OPTIONS = {"ferminet": ("hidden_one", "hidden_two"),
                         "psiformer": ("num_heads", "head_dim", "mlp_hidden", "layer_norm")}
_OPTIONS = _COMMON_OPTIONS + tuple(k for v in _ARCHITECTURE_OPTIONS.values() for k in v)


def _check_positive(opts: dict[str, Any], names: Sequence[str]) -> None:
    for key in names:
        value = opts[key]
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")


def _check_architecture(options: dict[str, Any]) -> str:
    """The chosen architecture; ``ValueError`` for an unknown one or another one's options."""
    architecture = options.get("architecture", "ferminet")
    if architecture not in ARCHITECTURES:
        hint = did_you_mean(str(architecture), ARCHITECTURES)
        raise ValueError(f"unknown architecture {architecture!r}" + (f" ({hint})" if hint else "")
                         + f"; choose one of {list(ARCHITECTURES)}")
    for other, names in _ARCHITECTURE_OPTIONS.items():
        wrong = [k for k in options if k in names and other != architecture]
        if wrong:
            raise ValueError(f"option(s) {wrong} apply to architecture={other!r} only, not "
                             f"{architecture!r}; its own options: "
                             f"{sorted(_ARCHITECTURE_OPTIONS[architecture])}")
    if architecture == "psiformer" and options.get("particles", "fermions") != "fermions":
        raise ValueError(f"architecture='psiformer' is for fermions only, got particles="
                         f"{options['particles']!r}; use architecture='ferminet' for bosons")
    return architecture


def _resolve_system(system: Any) -> dict:
    if not isinstance(system, Molecule):
        system = get_system(system) if isinstance(system, str) else Molecule.from_dict(system)
    return system.to_dict()


def _build_psiformer(options: dict[str, Any]) -> PsiformerWavefunction:
    preset = options.pop("preset", "M")
    if preset not in PSIFORMER_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PSIFORMER_PRESETS)}")
    opts = {**PSIFORMER_PRESETS[preset], "mlp_hidden": None, "layer_norm": False,
            "features": "cartesian", "jastrow": True, "envelope": "isotropic", **options}
    opts.pop("particles", None)
    opts["architecture"], opts["system"] = "psiformer", _resolve_system(opts["system"])
    if opts["features"] not in FEATURES:
        raise ValueError(f"features must be one of {list(FEATURES)}, got {opts['features']!r}")
    _check_positive(opts, ("n_determinants", "num_layers", "num_heads", "head_dim"))
    if opts["mlp_hidden"] is not None:
        _check_positive(opts, ("mlp_hidden",))
    for key in ("layer_norm", "jastrow"):
        if not isinstance(opts[key], bool):
            raise ValueError(f"{key} must be True or False, got {opts[key]!r}")
    return construct(PsiformerWavefunction, opts, "wavefunction")


def build_wavefunction(**options: Any) -> NeuralWavefunction:
    """Neural wavefunction of a molecule; ``build("wavefunction", ...)``.

    Options (keyword-only):
        system: a :class:`~equivar.qmc.Molecule` (``equivar.qmc.atom("Li")``), its ``to_dict()``,
            or a name for :func:`equivar.qmc.get_system` (``"He"``, ``"LiH"``). Required.
        architecture: ``"ferminet"`` (default: :class:`WavefunctionModel`) or ``"psiformer"``
            (:class:`PsiformerWavefunction`: self-attention over electrons, fermions only).
        preset: ``"S"``, ``"M"`` (default) or ``"L"`` (FermiNet's size, or the small
            Psiformer's): :data:`PRESETS`, :data:`~equivar.models.psiformer.PSIFORMER_PRESETS`.
        n_determinants, num_layers: override the preset.
        hidden_one, hidden_two: FermiNet's stream widths (``"ferminet"`` only).
        num_heads, head_dim: attention heads and their width, ``hidden = num_heads * head_dim``;
            mlp_hidden: None (default: one ``tanh`` layer, the paper's) or the width of a
            two-layer MLP; layer_norm: LayerNorm after each residual (default False)
            (``"psiformer"`` only).
        features: ``"cartesian"`` (default) or ``"invariant"`` (see the module docstring).
        particles: ``"fermions"`` (default: determinants + Jastrow) or ``"bosons"``
            (:class:`~equivar.heads.SymmetricHead`; spins are ignored; ``"ferminet"`` only).
        jastrow: multiply by the cusp Jastrow (default True).
        envelope: ``"isotropic"`` (default).
        dtype: ``"float32"``/``"float64"`` (default: torch's default). Constructed in float64
            and cast, like every equivar model.

    Example:
        >>> from equivar.models import build
        >>> from equivar.qmc import atom
        >>> psi = build("wavefunction", system=atom("Li"), preset="S", dtype="float64")
        >>> sign, logabs = psi(torch.randn(10, 3, 3, dtype=torch.float64))
        >>> sign.shape, logabs.shape
        (torch.Size([10]), torch.Size([10]))
        >>> psi = build("wavefunction", system=atom("Li"), architecture="psiformer", preset="S")
        >>> psi.config["num_heads"]
        2

    Raises:
        ValueError: a missing system, unknown options (with the closest valid one), options of
            another architecture, or bad values.
    """
    check_options(options, _OPTIONS, "wavefunction")  # unknown options, with hints
    if "system" not in options:
        raise ValueError("build('wavefunction') needs system=, e.g. equivar.qmc.atom('He')")
    if _check_architecture(options) == "psiformer":
        return _build_psiformer(dict(options))
    options = {k: v for k, v in options.items() if k != "architecture"}  # configs as before
    preset = options.get("preset", "M")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    opts = {**PRESETS[preset], "features": "cartesian",
            "particles": "fermions", "jastrow": True, "envelope": "isotropic", **options}
    opts.pop("preset", None)
    opts["system"] = _resolve_system(opts["system"])
    for key, allowed in [("features", FEATURES), ("particles", PARTICLES)]:
        if opts[key] not in allowed:
            raise ValueError(f"{key} must be one of {list(allowed)}, got {opts[key]!r}")
    _check_positive(opts, ("n_determinants", "hidden_one", "hidden_two", "num_layers"))
    return construct(WavefunctionModel, opts, "wavefunction")
