"""The audit of untrusted checkpoints and ``.pt2`` exports lives in :mod:`equivar.models.audit`,
beside the loaders that use it (simulation loads files too, and may not import training); its
names are re-exported here so that ``equivar.train.audit`` imports keep working."""

from __future__ import annotations

from equivar.models.audit import (  # noqa: F401 (re-exported)
    audit_pt2,
    check_program,
    describe_refusal,
    expression_problem,
    pickle_imports,
    unpickling_detail,
)

__all__ = ["audit_pt2", "check_program", "describe_refusal", "pickle_imports", "unpickling_detail"]
