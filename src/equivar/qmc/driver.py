"""``vmc(system, ...)``: optimise a neural wavefunction, then estimate its energy with an error
bar. The CLI ``equivar vmc`` and the benchmarks call this function.

One iteration: a sampler sweep (``steps`` Metropolis steps of every walker), the local energy of
every walker (exact Laplacian), one optimiser step. After ``iterations`` of them the parameters
are frozen and ``eval_iterations`` more sweeps give the energy: the mean of the per-iteration
mean local energies, with a blocking error bar (:mod:`equivar.qmc.statistics`). Only logging
(every ``log_every`` iterations) and checkpoints synchronise with the device.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from equivar.dtypes import DTYPES
from equivar.qmc.checkpoint import load_checkpoint, save_checkpoint
from equivar.qmc.hamiltonian import LAPLACIAN_METHODS, check_walkers, local_energy
from equivar.qmc.kfac import KFAC
from equivar.qmc.optim import AdamVMC, StochasticReconfiguration
from equivar.qmc.sampler import MetropolisSampler
from equivar.qmc.statistics import EnergyEstimate, estimate, format_value
from equivar.qmc.systems import Molecule, get_system
from equivar.typedconfig import dataclass_from_dict

__all__ = ["OPTIMIZERS", "VMCConfig", "VMCResult", "VMCRun", "vmc"]

#: optimiser names accepted by :func:`vmc` (``VMCConfig.optimizer``)
OPTIMIZERS = {"adam": AdamVMC, "kfac": KFAC, "sr": StochasticReconfiguration}
#: per-optimiser defaults of the settings left unset (None): SR's are minSR + SPRING's, KFAC's
#: FermiNet's (no momentum, norm constraint 1e-3); Adam uses none but lr
_DEFAULT_LR = {"adam": 1e-3, "kfac": 0.05, "sr": 0.05}
_DEFAULT_MOMENTUM = {"adam": 0.9, "kfac": 0.0, "sr": 0.9}
_DEFAULT_MAX_NORM = {"adam": 1e-2, "kfac": 1e-3, "sr": 1e-2}


@dataclass
class VMCConfig:
    """Settings of a VMC run (typed; :meth:`from_dict` rejects unknown keys with a hint).

    Attributes:
        iterations: optimisation steps (default 1000).
        walkers: Metropolis chains (default 1024).
        steps: Metropolis steps per iteration (decorrelation; default 10).
        burn_in: Metropolis steps before the first iteration (default 200).
        step_size, target_acceptance: initial proposal width (bohr) and acceptance to adapt to.
        optimizer: ``"sr"`` (natural gradient: minSR + SPRING momentum; default), ``"kfac"``
            (Kronecker-factored natural gradient, :class:`~equivar.qmc.kfac.KFAC`) or ``"adam"``.
        lr: initial learning rate (default: 0.05 for SR and KFAC, 1e-3 for Adam); lr_decay:
            iterations to halve it (``lr / (1 + t / lr_decay)``; default 10000).
        damping, momentum, max_norm: the natural gradient's ``lambda`` (default 1e-3), momentum
            (SPRING's ``mu`` for SR, default 0.9; KFAC's, default 0) and Fisher-norm step bound
            (default 1e-2 for SR; KFAC's norm constraint, default 1e-3).
        cov_ema_decay: KFAC's moving-average weight of old curvature statistics (default 0.95).
        clip_width: local-energy clipping width in mean absolute deviations (default 5).
        pretrain: Hartree-Fock pre-training iterations (default 0; needs pyscf).
        pretrain_basis: pyscf basis for pre-training (default ``"cc-pvdz"``).
        eval_iterations: sweeps of the final energy estimate (default 200).
        laplacian: ``"forward_over_backward"`` (default) or ``"double_backward"``.
        chunk_size: vmap chunk for the Laplacian and the SR log-derivatives (default: none).
        seed: seeds the model initialisation and the sampler (default 0).
        device: ``"cpu"`` or ``"cuda"`` (default ``"cpu"``).
        dtype: ``"float64"`` (default) or ``"float32"`` (faster on GPUs).
        checkpoint_every: iterations between checkpoints (default 100).
        log_every: iterations between log lines / device syncs (default 10).
    """

    iterations: int = 1000
    walkers: int = 1024
    steps: int = 10
    burn_in: int = 200
    step_size: float = 0.2
    target_acceptance: float = 0.5
    optimizer: str = "sr"
    lr: float | None = None
    lr_decay: float = 1e4
    damping: float = 1e-3
    momentum: float | None = None
    max_norm: float | None = None
    cov_ema_decay: float = 0.95
    clip_width: float = 5.0
    pretrain: int = 0
    pretrain_basis: str = "cc-pvdz"
    eval_iterations: int = 200
    laplacian: str = "forward_over_backward"
    chunk_size: int | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float64"
    checkpoint_every: int = 100
    log_every: int = 10

    #: settings a resumed run may change (the rest must match the checkpoint)
    RESUMABLE_CHANGES = ("iterations", "eval_iterations", "checkpoint_every", "log_every",
                         "device", "chunk_size")

    def __post_init__(self) -> None:
        positive = ("walkers", "steps", "checkpoint_every", "log_every")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("iterations", "burn_in", "pretrain", "eval_iterations"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got "
                             f"{self.optimizer!r}")
        if self.laplacian not in LAPLACIAN_METHODS:
            raise ValueError(f"laplacian must be one of {LAPLACIAN_METHODS}, got "
                             f"{self.laplacian!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.eval_iterations and self.eval_iterations < 4:
            raise ValueError(f"eval_iterations must be 0 or >= 4 (for an error bar), got "
                             f"{self.eval_iterations}")
        if self.lr is None:
            self.lr = _DEFAULT_LR[self.optimizer]
        if self.momentum is None:
            self.momentum = _DEFAULT_MOMENTUM[self.optimizer]
        if self.max_norm is None:
            self.max_norm = _DEFAULT_MAX_NORM[self.optimizer]
        # real numbers: finite, and each in its meaningful range (a NaN learning rate would
        # run the whole optimisation on NaN parameters and report NaN at the end)
        ranges = {"lr": (lambda v: v > 0, "> 0"), "step_size": (lambda v: v > 0, "> 0"),
                  "target_acceptance": (lambda v: 0 < v < 1, "in (0, 1)"),
                  "lr_decay": (lambda v: v > 0, "> 0"), "damping": (lambda v: v >= 0, ">= 0"),
                  "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
                  "max_norm": (lambda v: v > 0, "> 0"),
                  "cov_ema_decay": (lambda v: 0 <= v < 1, "in [0, 1)"),
                  "clip_width": (lambda v: v > 0, "> 0")}  # fmt: skip
        for name, (in_range, what) in ranges.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or not in_range(value):
                raise ValueError(f"{name} must be a finite number {what}, got {value!r}")

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> VMCConfig:
        """From plain data (e.g. ``yaml.safe_load``); unknown keys raise ``ValueError`` naming
        the closest valid key (the loader of every typed config, :mod:`equivar.typedconfig`)."""
        return dataclass_from_dict(cls, options)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class VMCResult:
    """Outcome of :func:`vmc`.

    Attributes:
        energy, error: the final energy and its blocking error bar (hartree).
        estimate: the full :class:`~equivar.qmc.statistics.EnergyEstimate` (with ``tau``).
        variance: mean variance of the local energy over the evaluation (hartree^2).
        history: per training iteration: ``energy`` (mean E_L), ``variance``, ``acceptance``,
            ``step_size``, ``time`` (s since the start of training).
        eval_energies: mean E_L of each evaluation sweep.
        wavefunction: the optimised model.
        system, config: what ran.
        train_time, eval_time: wall-clock seconds.
    """

    energy: float
    error: float
    estimate: EnergyEstimate | None
    variance: float
    history: dict[str, list[float]]
    eval_energies: list[float]
    wavefunction: nn.Module
    system: Molecule
    config: VMCConfig
    train_time: float
    eval_time: float
    hartree_fock: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return (f"{self.system.name}: E = {format_value(self.energy, self.error)} Ha "
                f"(+- {self.error:.1e}, var {self.variance:.3g} Ha^2)")


_HISTORY = ("energy", "variance", "acceptance", "step_size", "time")


def _make_optimizer(cfg: VMCConfig, wavefunction: nn.Module):
    if cfg.optimizer == "adam":
        return AdamVMC(wavefunction, lr=cfg.lr, decay=cfg.lr_decay, clip_width=cfg.clip_width)
    if cfg.optimizer == "kfac":
        return KFAC(wavefunction, lr=cfg.lr, decay=cfg.lr_decay, damping=cfg.damping,
                    norm_constraint=cfg.max_norm, momentum=cfg.momentum,
                    cov_ema_decay=cfg.cov_ema_decay, clip_width=cfg.clip_width,
                    chunk_size=cfg.chunk_size)
    return StochasticReconfiguration(wavefunction, lr=cfg.lr, decay=cfg.lr_decay,
                                     damping=cfg.damping, momentum=cfg.momentum,
                                     max_norm=cfg.max_norm, clip_width=cfg.clip_width,
                                     chunk_size=cfg.chunk_size)


def _build_model(system: Molecule, model, dtype: torch.dtype, seed: int) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    from equivar.models import build

    options = dict(model or {})
    if "system" in options:
        raise ValueError("pass the system to vmc(system, ...), not inside model options")
    torch.manual_seed(seed)
    return build("wavefunction", system=system, dtype=dtype, **options)


def _check_resume(saved: dict[str, Any], cfg: VMCConfig, system: Molecule, model_config) -> None:
    if saved["system"] != system.to_dict():
        raise ValueError(f"checkpoint is for system {saved['system'].get('name')}, not "
                         f"{system.name}")
    if model_config is not None and saved["model"] != model_config:
        raise ValueError("checkpoint was made with different model options: "
                         f"{saved['model']} vs {model_config}")
    defaults = VMCConfig().to_dict()  # a setting newer than the checkpoint: its default
    for key, value in cfg.to_dict().items():
        before = saved["vmc"].get(key, defaults[key])
        if key not in VMCConfig.RESUMABLE_CHANGES and before != value:
            raise ValueError(f"cannot resume with {key}={value!r}: the checkpoint has "
                             f"{before!r}")


def vmc(
    system: Molecule | str,
    *,
    model: nn.Module | dict[str, Any] | None = None,
    config: VMCConfig | dict[str, Any] | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = False,
    plot: str | os.PathLike | None = None,
    **options: Any,
) -> VMCResult:
    """Variational Monte Carlo: optimise a wavefunction of ``system``, then estimate its energy.

    Args:
        system: a :class:`~equivar.qmc.Molecule` or a name (``"Li"``, ``"H2"``, ``"LiH"``).
        model: options for ``build("wavefunction", ...)`` (default ``{}``: preset ``"M"``), or
            a ready wavefunction module.
        config: a :class:`VMCConfig` or its dict; ``**options`` override single fields
            (``iterations=200, walkers=512, optimizer="adam"``...).
        checkpoint: file to write checkpoints to (every ``checkpoint_every`` iterations and at
            the end of training; atomic).
        resume: continue from ``checkpoint`` if it exists: parameters, walkers, generator,
            optimiser state and history are restored, so the run continues exactly as if
            uninterrupted. Only ``VMCConfig.RESUMABLE_CHANGES`` may differ from the checkpoint.
        progress: show a tqdm progress bar.
        plot: write the energy-vs-iteration PNG there (needs matplotlib).

    Returns:
        :class:`VMCResult` (``result.energy``, ``result.error``, ``result.history``...).

    Raises:
        ValueError: unknown or bad settings, a checkpoint that does not match, bad walkers.
        FloatingPointError: the energy became NaN/inf during training (names the iteration).

    Example:
        >>> result = vmc("He", model={"preset": "S"}, iterations=20, walkers=128,
        ...              eval_iterations=10)  # doctest: +SKIP
        >>> print(result)  # doctest: +SKIP
        He: E = -2.89(1) Ha ...
    """
    system = get_system(system)
    if isinstance(config, VMCConfig):
        cfg = VMCConfig.from_dict({**config.to_dict(), **options})
    else:
        cfg = VMCConfig.from_dict({**(config or {}), **options})
    run = VMCRun(system, model, cfg, checkpoint)
    run.start(resume)
    run.train(progress)
    return run.finish(plot)


class VMCRun:
    """One :func:`vmc` run as named steps: ``start`` (fresh or resumed), ``train`` (the
    optimisation iterations), ``finish`` (the frozen-parameter energy estimate, the result).

    Attributes:
        history: per training iteration, the lists of :class:`VMCResult.history`.
        iteration: training iterations done (resumed ones included).
    """

    def __init__(self, system: Molecule, model, cfg: VMCConfig,
                 checkpoint: str | os.PathLike | None) -> None:  # fmt: skip
        self.system, self.cfg, self.checkpoint = system, cfg, checkpoint
        dtype = DTYPES[cfg.dtype]
        device = torch.device(cfg.device)
        self.device = device
        self.wavefunction = _build_model(system, model, dtype, cfg.seed).to(device, dtype)
        self.model_config = getattr(self.wavefunction, "config", None)
        self.run_config = {"model": self.model_config, "vmc": cfg.to_dict(),
                           "system": system.to_dict()}  # fmt: skip
        self.sampler = MetropolisSampler(system, cfg.walkers, steps=cfg.steps,
                                         step_size=cfg.step_size,
                                         target_acceptance=cfg.target_acceptance, device=device,
                                         dtype=dtype, seed=cfg.seed)  # fmt: skip
        self.optimizer = _make_optimizer(cfg, self.wavefunction)
        self.history: dict[str, list[float]] = {k: [] for k in _HISTORY}
        self.iteration, self.elapsed_before, self.hf_energy = 0, 0.0, None
        self.train_time = 0.0

    def save(self) -> None:
        """Write the checkpoint (if the run has one): weights, walkers, optimiser, history."""
        if self.checkpoint is not None:
            run = {"iteration": self.iteration, "sampler": self.sampler.state_dict(),
                   "optimizer": self.optimizer.state_dict(), "history": self.history,
                   "hartree_fock": self.hf_energy}  # fmt: skip
            save_checkpoint(self.checkpoint, self.wavefunction, self.run_config, run)

    def start(self, resume: bool) -> None:
        """Continue from the checkpoint (``resume`` and it exists), or check the walkers,
        pre-train (``cfg.pretrain``), burn in and write iteration 0's checkpoint."""
        cfg, system = self.cfg, self.system
        if resume and self.checkpoint is not None and Path(self.checkpoint).is_file():
            record = load_checkpoint(self.checkpoint, map_location=self.device)
            _check_resume(record["config"], cfg, system, self.model_config)
            self.wavefunction.load_state_dict(record["state_dict"])
            self.sampler.load_state_dict(record["run"]["sampler"])
            self.optimizer.load_state_dict(record["run"]["optimizer"])
            self.history = {k: list(v) for k, v in record["run"]["history"].items()}
            self.iteration = int(record["run"]["iteration"])
            self.hf_energy = record["run"]["hartree_fock"]
            self.elapsed_before = self.history["time"][-1] if self.history["time"] else 0.0
            return
        check_walkers(self.sampler.walkers, system)
        if cfg.pretrain:
            from equivar.qmc.pretrain import HartreeFock, pretrain_orbitals

            hf = HartreeFock(system, cfg.pretrain_basis)
            self.hf_energy = hf.energy
            pretrain_orbitals(self.wavefunction, system, self.sampler, cfg.pretrain,
                              basis=cfg.pretrain_basis, hartree_fock=hf)  # fmt: skip
        self.sampler.burn_in(self.wavefunction, cfg.burn_in)
        self.save()

    def _local_energy(self) -> torch.Tensor:
        return local_energy(self.wavefunction, self.sampler.walkers, self.system,
                            method=self.cfg.laplacian, chunk_size=self.cfg.chunk_size,
                            validate=False)  # fmt: skip

    def train(self, progress: bool = False) -> None:
        """The optimisation iterations left: sweep, local energy, optimiser step; the history
        is read back from the device every ``log_every`` iterations (one sync), checkpoints
        every ``checkpoint_every``."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.bar = tqdm(total=cfg.iterations, initial=min(self.iteration, cfg.iterations),
                        disable=not progress, desc=f"vmc {self.system.name}", unit="it",
                        dynamic_ncols=True)  # fmt: skip
        self._pending: list[torch.Tensor] = []
        self._t0 = time.perf_counter()
        for it in range(self.iteration, cfg.iterations):
            acceptance = self.sampler.sweep(self.wavefunction)
            e = self._local_energy()
            self.optimizer.step(self.sampler.walkers, e)
            self._pending.append(torch.stack([e.mean(), e.var(), acceptance,
                                              self.sampler.step_size.to(e.dtype)]))
            self.iteration = done = it + 1
            if done % cfg.log_every == 0 or done == cfg.iterations:
                self._flush()
            if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
                self._flush()
                self.save()
        self.bar.close()
        self.train_time = self.elapsed_before + time.perf_counter() - self._t0

    def _flush(self) -> None:
        """Move the pending per-iteration numbers into the history (the one host sync)."""
        if not self._pending:
            return
        rows = torch.stack(self._pending).cpu().tolist()
        self._pending.clear()
        history = self.history
        now = self.elapsed_before + time.perf_counter() - self._t0
        for row in rows:
            for key, value in zip(_HISTORY[:4], row, strict=True):
                history[key].append(float(value))
            history["time"].append(now)
        if not all(math.isfinite(v) for v in history["energy"][-len(rows):]):
            raise FloatingPointError(f"{self.system.name}: the local energy became NaN/inf by "
                                     f"iteration {self.iteration}; lower lr or raise damping")
        self.bar.set_postfix(E=f"{history['energy'][-1]:.5f}",
                             var=f"{history['variance'][-1]:.3g}",
                             acc=f"{history['acceptance'][-1]:.2f}")  # fmt: skip
        self.bar.update(self.iteration - self.bar.n)

    def finish(self, plot: str | os.PathLike | None = None) -> VMCResult:
        """``eval_iterations`` sweeps with frozen parameters -> the energy with its blocking
        error bar; the plot if asked for."""
        cfg, t1 = self.cfg, time.perf_counter()
        means, variances = [], []
        for _ in range(cfg.eval_iterations):
            self.sampler.sweep(self.wavefunction)
            e = self._local_energy()
            means.append(e.mean())
            variances.append(e.var())
        eval_energies = torch.stack(means).cpu().tolist() if means else []
        eval_time = time.perf_counter() - t1
        if eval_energies:
            est = estimate(eval_energies)
            energy, error = est.mean, est.error
            variance = float(torch.stack(variances).mean())
        else:
            est, energy, error, variance = None, math.nan, math.nan, math.nan
        result = VMCResult(energy, error, est, variance, self.history, eval_energies,
                           self.wavefunction, self.system, cfg, self.train_time, eval_time,
                           self.hf_energy)  # fmt: skip
        if plot is not None and self.history["energy"]:
            from equivar.qmc.plot import plot_energy

            plot_energy(self.history, plot, title=f"VMC {result}")
        return result
