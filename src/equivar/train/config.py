"""Typed training configuration: dataclasses loaded from YAML, with ``a.b=c`` overrides.

Unknown keys are errors that name the key and the closest valid one, at every level.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from equivar.configfile import load_yaml_file, parse_yaml
from equivar.typedconfig import coerce, dataclass_from_dict

if TYPE_CHECKING:
    from equivar.data import LabelKeys


@dataclass
class DataConfig:
    """Where the structures come from and how they are split and batched.

    Args:
        train: path to an extxyz/npz file or a shard directory (read with
            ``equivar.data.read``). May be empty when the structures are passed to
            ``fit(config, train=...)`` as an object.
        valid: separate validation file; if empty (and no ``fit(valid=...)``), ``valid_fraction``
            of ``train`` is held out.
        test: separate test file; if empty (and no ``fit(test=...)``), ``test_fraction`` of
            ``train`` is held out.
        valid_fraction, test_fraction: held-out fractions when no file or object is given.
        max_structures: use only the first N structures of ``train`` (file or object; 0: all).

    A run whose data came from objects records them in its ``config.yaml`` as a description,
    e.g. ``train: "<in-memory AtomsDataset, 30 structures>"`` (see :func:`equivar.train.fit`).
        cutoff: neighbour cutoff (Angstrom); also the model's cutoff.
        batch_size, valid_batch_size: structures per batch.
        seed: seed of the split.
        energy_key, forces_key, stress_key, virial_key: where the structures keep their labels
            (MACE's ``energy_key``/``forces_key``/...), e.g. ``REF_energy``: ``atoms.info`` or
            the calculator's results for energy/stress/virial, ``atoms.arrays`` or the
            calculator's for forces, the array or field of that name in ``.npz`` files and
            shards (see :mod:`equivar.data.labels`). Every file the run reads (train, valid,
            test) and every list of ``ase.Atoms`` passed to ``fit`` is read with them; datasets
            passed to ``fit`` must have been built with them. ``best.pt`` records them, so
            that evaluation reads new files the same way
            (:func:`equivar.train.checkpoint.checkpoint_label_keys`). Defaults ``"energy"``,
            ``"forces"``, ``"stress"``, ``"virial"``: optional in each structure; any other key
            is required in every one.
    """

    train: str = ""
    valid: str = ""
    test: str = ""
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    max_structures: int = 0
    cutoff: float = 5.0
    batch_size: int = 8
    valid_batch_size: int = 32
    seed: int = 0
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    virial_key: str = "virial"

    def label_keys(self) -> LabelKeys:
        """The label keys as an :class:`equivar.data.LabelKeys` (checked)."""
        from equivar.data.labels import LabelKeys

        return LabelKeys(energy_key=self.energy_key, forces_key=self.forces_key,
                         stress_key=self.stress_key, virial_key=self.virial_key)


@dataclass
class ModelConfig:
    """Model name and builder options (see ``equivar.models.build``)."""

    name: str = "potential"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """Weights of each target in the loss (0 leaves it out).

    ``energy`` is per atom; ``forces``, ``stress``, ``dipole``, ``polarizability`` are mean
    squared errors over components; ``targets`` weighs any other output by name.
    """

    energy: float = 1.0
    forces: float = 10.0
    stress: float = 0.0
    dipole: float = 0.0
    polarizability: float = 0.0
    targets: dict[str, float] = field(default_factory=dict)
    kind: str = "mse"  # "mse" or "huber"
    huber_delta: float = 0.01


@dataclass
class OptimConfig:
    """AdamW with warm-up, a schedule, gradient clipping and an EMA of the weights.

    Args:
        lr: peak learning rate (default 1e-2). equivar's layers keep O(1) weights and scale by
            the fan-in in the forward pass (as e3nn does), so they want larger rates than
            plain torch models: on the shipped ethanol example the test force MAE falls from 0.10
            to 0.055 eV/A between 5e-3 and 0.1 and training diverges at 0.4
            (``benchmarks/lr_sweep.py``, ``benchmarks/RESULTS.md``).
        schedule: ``"plateau"`` (halve on stalled validation loss), ``"cosine"`` or
            ``"constant"``.
        warmup_steps: linear warm-up of the learning rate from 0.
        grad_clip: clip the global gradient norm (0: off).
        ema_decay: decay of the exponential moving average of the weights (0: off); validation
            and checkpoints' models use the EMA weights.
    """

    lr: float = 1e-2
    weight_decay: float = 0.0
    schedule: str = "plateau"
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    min_lr: float = 1e-6
    warmup_steps: int = 0
    grad_clip: float = 10.0
    ema_decay: float = 0.99


@dataclass
class TrainConfig:
    """The whole run.

    Args:
        output: run folder (checkpoints, CSV log, plots, predictions).
        epochs: maximum number of epochs.
        patience: early stopping after this many validations without improvement (0: off).
        precision: ``"float64"``, ``"float32"``, ``"tf32"`` (float32 storage, TF32 matmuls on
            GPU) or ``"bf16"`` (autocast on GPU).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        seed: seed of weights and shuffling.
        checkpoint_every: also write the resumable checkpoint every N optimiser steps (0: only
            at the end of each epoch).
        progress: show a progress bar.
        init_from: fine-tune: start from this checkpoint's model and weights (its architecture
            and statistics are kept; see :mod:`equivar.train.finetune`). Empty: a new model.
        freeze: glob patterns of parameter names (e.g. ``"backbone.*"``) to keep fixed: they
            are left out of the optimiser and stay bit-identical. Each must match a parameter.
        reset: glob patterns of state names (e.g. ``"readout.*"``) re-initialised after loading
            ``init_from``; ``"scale_shift.*"`` refits the energy shifts/scale to the new data.
        committee: train this many members with seeds ``seed, seed + 1, ...`` (initial weights
            and batch order) into ``output/member_k/`` (see :mod:`equivar.train.committee`).
        time_budget: minutes of training, wall clock (0: off). The time counts from the start
            of the training loop (after reading data and building the model), validations and
            checkpoint writes included. Training stops after the optimiser step at which the
            budget is spent (at least one step is taken), then ends as usual: validation of
            the EMA weights, ``best.pt`` and ``checkpoint_last.pt``, test metrics and plots.
            The time spent is saved in ``checkpoint_last.pt``, so ``--resume`` continues
            against the same budget: resuming a run that spent it trains no further (raise
            ``time_budget`` to extend it). A killed run's time after its last checkpoint is
            not counted (those steps are taken again). Where it stops depends on the machine's
            speed; the learning-rate schedule still runs over ``epochs``. Each committee
            member has the whole budget.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    output: str = "runs/run"
    epochs: int = 100
    patience: int = 0
    precision: str = "float32"
    device: str = "auto"
    seed: int = 0
    checkpoint_every: int = 0
    progress: bool = True
    init_from: str = ""
    freeze: list[str] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)
    committee: int = 1
    time_budget: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRECISIONS = ("float64", "float32", "tf32", "bf16")
SCHEDULES = ("plateau", "cosine", "constant")


def _check(config: TrainConfig, *, require_train: bool = True) -> TrainConfig:
    if config.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {config.precision!r}")
    if config.optim.schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got "
                         f"{config.optim.schedule!r}")
    if config.loss.kind not in ("mse", "huber"):
        raise ValueError(f"loss.kind must be 'mse' or 'huber', got {config.loss.kind!r}")
    if require_train and not config.data.train:
        raise ValueError("data.train must name a file of training structures (or pass them to "
                         "fit(config, train=...))")
    for name in ("epochs", "data.batch_size", "data.valid_batch_size"):
        obj, attr = (config, name) if "." not in name else (config.data, name.split(".")[1])
        if int(getattr(obj, attr)) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(obj, attr)}")
    if not 0 <= config.data.valid_fraction < 1 or not 0 <= config.data.test_fraction < 1:
        raise ValueError("data.valid_fraction and data.test_fraction must be in [0, 1)")
    try:
        config.data.label_keys()
    except ValueError as err:
        raise ValueError(f"data: {err}") from None
    _check_ranges(config)
    if config.committee < 1:
        raise ValueError(f"committee must be >= 1 (members), got {config.committee}")
    if not 0 <= config.time_budget < float("inf"):
        raise ValueError(f"time_budget must be >= 0 minutes (0: off), got {config.time_budget}")
    if config.reset and not config.init_from:
        raise ValueError(f"reset {config.reset} re-initialises parts of a loaded checkpoint: "
                         "it needs init_from")
    return config


def _check_ranges(config: TrainConfig) -> None:
    """Numbers outside their meaningful range: a negative loss weight trains towards larger
    errors, a negative learning rate ascends, an EMA decay of 1 never moves."""
    loss, optim, data = config.loss, config.optim, config.data
    weights = {f"loss.{k}": getattr(loss, k)
               for k in ("energy", "forces", "stress", "dipole", "polarizability")}
    for target, weight in loss.targets.items():
        try:
            weights[f"loss.targets.{target}"] = coerce(weight, float, f"loss.targets.{target}")
        except ValueError as err:
            raise ValueError(str(err)) from None
    for name, weight in weights.items():
        if weight < 0:
            raise ValueError(f"{name} must be >= 0 (a loss weight; 0 leaves the target out), "
                             f"got {weight}")
    if not any(w > 0 for w in weights.values()):
        raise ValueError("every loss weight is 0: nothing to train on; set loss.energy, "
                         "loss.forces, ... or loss.targets")
    checks = [
        ("optim.lr", optim.lr, optim.lr >= 0, ">= 0"),
        ("optim.weight_decay", optim.weight_decay, optim.weight_decay >= 0, ">= 0"),
        ("optim.grad_clip", optim.grad_clip, optim.grad_clip >= 0, ">= 0 (0: off)"),
        ("optim.ema_decay", optim.ema_decay, 0 <= optim.ema_decay < 1, "in [0, 1) (0: off)"),
        ("optim.warmup_steps", optim.warmup_steps, optim.warmup_steps >= 0, ">= 0"),
        ("optim.plateau_factor", optim.plateau_factor, 0 < optim.plateau_factor < 1,
         "in (0, 1)"),
        ("optim.plateau_patience", optim.plateau_patience, optim.plateau_patience >= 0, ">= 0"),
        ("optim.min_lr", optim.min_lr, optim.min_lr >= 0, ">= 0"),
        ("loss.huber_delta", loss.huber_delta, loss.huber_delta > 0, "> 0"),
        ("data.cutoff", data.cutoff, data.cutoff > 0, "> 0 Angstrom"),
        ("data.max_structures", data.max_structures, data.max_structures >= 0, ">= 0 (0: all)"),
        ("patience", config.patience, config.patience >= 0, ">= 0 (0: off)"),
        ("checkpoint_every", config.checkpoint_every, config.checkpoint_every >= 0,
         ">= 0 (0: at validations only)"),
    ]  # fmt: skip
    for name, value, ok, what in checks:
        if not ok:
            raise ValueError(f"{name} must be {what}, got {value}")


def config_from_dict(values: dict[str, Any], *, require_train: bool = True) -> TrainConfig:
    """Typed config from a plain mapping (unknown keys raise ``ValueError``).

    Args:
        values: the config as nested mappings.
        require_train: refuse an empty ``data.train`` (default True; ``fit`` passes False when
            its ``train`` argument brings the structures).
    """
    return _check(dataclass_from_dict(TrainConfig, dict(values), ""), require_train=require_train)


def _set_dotted(values: dict[str, Any], dotted: str) -> None:
    if "=" not in dotted:
        raise ValueError(f"override {dotted!r} must look like key.sub=value")
    key, raw = dotted.split("=", 1)
    parts = key.strip().split(".")
    node = values
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {dotted!r}: {part!r} is not a section")
    node[parts[-1]] = parse_yaml(raw, f"override {dotted!r}")


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple = (),
    *,
    require_train: bool = True,
) -> TrainConfig:
    """Load a YAML config (``yaml.safe_load``) and apply ``a.b=c`` overrides (values in YAML).

    Relative data paths (and ``init_from``) are taken relative to the config file's folder when
    they exist there, else relative to the working directory. ``require_train=False`` accepts
    an empty ``data.train`` (for ``fit(config, train=...)``).

    Example:
        >>> cfg = load_config(None, ["data.train=x.extxyz", "optim.lr=1e-3"])
        >>> cfg.optim.lr
        0.001
    """
    values: dict[str, Any] = {}
    base = None
    if path is not None:
        path = Path(path)
        loaded = load_yaml_file(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"config {str(path)!r} must be a mapping of keys (data:, model:, "
                             f"epochs: ...), got a YAML {type(loaded).__name__}")
        values = loaded or {}
        base = path.parent
    for item in overrides:
        _set_dotted(values, item)
    config = config_from_dict(values, require_train=require_train)
    if base is not None:
        for obj, name in ((config.data, "train"), (config.data, "valid"), (config.data, "test"),
                          (config, "init_from")):
            p = getattr(obj, name)
            if p and not Path(p).is_absolute() and (base / p).exists() and not Path(p).exists():
                setattr(obj, name, str(base / p))
    return config
