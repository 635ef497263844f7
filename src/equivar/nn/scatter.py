"""Sums and means of rows onto segments (nodes or graphs), the only reductions blocks use.

Implemented in :mod:`equivar.kernels.scatter` (the kernels below ``nn`` need them too) and
re-exported here, where the blocks and the heads import them.
"""

from equivar.kernels.scatter import scatter_mean, scatter_sum

__all__ = ["scatter_mean", "scatter_sum"]
