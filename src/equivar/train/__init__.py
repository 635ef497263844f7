"""Training: ``fit(config)``, typed configs, losses and metrics, EMA, checkpoints, fine-tuning,
committees and export for deployment.

Names are resolved lazily, so ``import equivar.train`` does no work.
"""

from __future__ import annotations

from equivar._lazy import lazy_attributes

_WHERE = {
    "fit": "loop",
    "Trainer": "trainer",
    "train_one": "trainer",
    "evaluate": "evaluation",
    "load_config": "config",
    "config_from_dict": "config",
    "TrainConfig": "config",
    "load_checkpoint": "checkpoint",
    "checkpoint_label_keys": "checkpoint",
    "save_checkpoint": "checkpoint",
    "ExponentialMovingAverage": "ema",
    "export_model": "export",
    "load_exported": "export",
    "ExportedPotential": "export",
    "fit_committee": "committee",
    "CommitteeModel": "committee",
    "finetune_model": "finetune",
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, __all__)
