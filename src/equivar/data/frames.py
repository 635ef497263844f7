"""One structure as numpy arrays: what the writers store (``write_npz``'s ``.npz``, HDF5 shards).

Both writers take ``ase.Atoms`` or single graphs (``Data``) and store the same fields, so the
conversion of one frame lives here, below both of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from equivar import keys as K
from equivar.data.graph import atoms_fields, is_node_level

if TYPE_CHECKING:
    import ase
    from torch_geometric.data import Data

__all__ = ["NOT_TARGETS", "frame_fields"]

#: Fields of a frame that are never targets: the structure, PyG's bookkeeping, derived edges.
NOT_TARGETS = frozenset(K.STRUCTURE_KEYS) | {K.NUM_NODES, K.PTR, K.EDGE_VECTORS, K.EDGE_LENGTHS}


def frame_fields(item: ase.Atoms | Data) -> tuple[dict[str, np.ndarray], set[str]]:
    """Numpy fields of one frame (targets without their leading graph axis) and the names of
    its node-level fields.

    Args:
        item: an ``ase.Atoms`` or a single graph ``Data`` (with ``pos``).

    Returns:
        ``(fields, node_keys)``: every tensor field as a numpy array (``ase.Atoms`` give
        float64), with ``cell`` zeros and ``pbc`` False added when the frame has no cell; and
        the names of the per-atom targets.

    Raises:
        TypeError: ``item`` is neither.

    Shapes:
        node fields ``[n_nodes, ...]`` (``pos [n_nodes, 3]``, ``z [n_nodes]``), graph fields
        ``[1, ...]`` (``cell [1, 3, 3]``, ``pbc [1, 3]``, ``energy [1]``).

    Example:
        >>> from ase.build import molecule
        >>> fields, node_keys = frame_fields(molecule("H2O"))
        >>> fields["pos"].shape, fields["cell"].shape
        ((3, 3), (1, 3, 3))
    """
    import ase

    if isinstance(item, ase.Atoms):
        fields, node_keys = atoms_fields(item, torch.float64)
    elif hasattr(item, "keys") and hasattr(item, K.POSITIONS):
        n = int(item[K.POSITIONS].shape[0])
        fields = {k: item[k] for k in item.keys() if isinstance(item[k], torch.Tensor)}
        node_keys = {k: v for k, v in fields.items() if k not in NOT_TARGETS}
        node_keys = {k for k, v in node_keys.items() if is_node_level(k, v, n)}
    else:
        raise TypeError(f"structures must be ase.Atoms or Data, got {type(item).__name__}")
    out = {k: v.detach().cpu().numpy() for k, v in fields.items()}
    if K.CELL not in out:
        out[K.CELL] = np.zeros((1, 3, 3))
        out[K.PBC] = np.zeros((1, 3), dtype=bool)
    return out, node_keys
