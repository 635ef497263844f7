"""ASE calculator for equivar potentials: energy, forces, stress, committees, batches.

The calculator turns an ``ase.Atoms`` into a graph with the same code the datasets use
(:func:`equivar.data.graph.atoms_fields` and :func:`equivar.data.graph.checked_graph`), calls the
model (or every member of a committee) and hands back ASE's units and conventions: energy in eV,
forces in eV/Angstrom, stress in eV/Angstrom^3 in Voigt order ``(xx, yy, zz, yz, xz, xy)`` with
ASE's sign (``stress = dE/d(strain) / volume``, which is what the model returns as a 3x3).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from equivar import keys as K
from equivar.data.graph import atoms_fields, checked_graph, full_to_voigt
from equivar.data.validation import check_positions, check_species
from equivar.dtypes import resolve_dtype

if TYPE_CHECKING:
    import ase
    from torch_geometric.data import Data

__all__ = ["EquivarCalculator", "as_calculator"]

def _load_checkpoint(path: str | Path, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """Rebuild a potential from a checkpoint (``equivar.train.load_checkpoint``'s format and
    errors), refusing other kinds of model. ``dtype`` rebuilds rather than casts."""
    from equivar.models.checkpoint import model_from_checkpoint_data, read_checkpoint

    data = read_checkpoint(path)
    name = data["config"].get("name")
    if name != "potential":
        raise ValueError(
            f"checkpoint {str(path)!r} holds a {name!r} model; the calculator needs a "
            "'potential' (config['name'] == 'potential')"
        )
    try:
        return model_from_checkpoint_data(data, dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {str(path)!r}: {err}") from None


def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from err


def _expand(model_or_checkpoint: Any) -> list[Any]:
    """Committee members from a model, a path (checkpoint, ``.pt2`` export, a run's or a
    committee's output folder) or a list of these."""
    items = (
        list(model_or_checkpoint)
        if isinstance(model_or_checkpoint, (list, tuple))
        else [model_or_checkpoint]
    )
    members: list[Any] = []
    for item in items:
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            from equivar.models.committee import committee_checkpoints

            members += committee_checkpoints(item)
        else:
            members.append(item)
    return members


def _dtype_of(model: torch.nn.Module) -> torch.dtype:
    param = next(model.parameters(), None)
    return param.dtype if param is not None else model.dtype


def _prepare(member: Any, device: torch.device, dtype: torch.dtype | None) -> torch.nn.Module:
    """A potential in eval mode on ``device`` in ``dtype``, from a module or a checkpoint path.

    A module that already has the right device and dtype is used as it is (not copied); one that
    needs converting is deep-copied first, so the caller's model is never changed in place.
    Exported potentials (``.pt2``) run as exported: their device and dtype cannot change.
    """
    from equivar.models.exported import ExportedPotential, load_exported

    if isinstance(member, (str, Path)) and Path(member).suffix == ".pt2":
        member = load_exported(member)
    if isinstance(member, ExportedPotential):
        if dtype is not None and dtype != member.dtype:
            raise ValueError(f"an exported potential runs in the dtype it was exported in "
                             f"({member.dtype}), not {dtype}; export it again with --dtype")
        return member.eval()
    if isinstance(member, (str, Path)):
        model = _load_checkpoint(member, dtype)
    elif isinstance(member, torch.nn.Module):
        model = member
    else:
        raise TypeError(
            "model_or_checkpoint must be a potential (torch.nn.Module), a checkpoint path or a "
            f"list of these, got {type(member).__name__}"
        )
    for attr in ("species", "cutoff"):
        if not hasattr(model, attr):
            raise TypeError(f"{type(model).__name__} has no .{attr}: not an equivar potential")
    param = next(model.parameters(), None)
    current = (param.device, param.dtype) if param is not None else (device, dtype)
    target = (device, dtype if dtype is not None else current[1])
    if current != target and model is member:
        model = copy.deepcopy(model)
    return model.to(device=target[0], dtype=target[1]).eval()


class EquivarCalculator(Calculator):
    """ASE calculator for an equivar potential, or a committee of them.

    Properties: ``energy`` and ``free_energy`` (eV; the same number), ``energies`` (per atom),
    ``forces`` (eV/Angstrom) and, for periodic structures, ``stress`` (eV/Angstrom^3, Voigt
    order, ASE's sign). A committee (a list of models) reports the member mean of each and adds
    ``energy_std``, ``forces_std`` (per component, ``[n_atoms, 3]``) and ``stress_std``: the
    standard deviation over members (``ddof=0``).

    Args:
        model_or_checkpoint: a potential (e.g. ``build("potential", ...)``), the path of a
            checkpoint, of an exported ``.pt2`` (:func:`equivar.train.export.export_model`), of
            a training run's folder (its ``best.pt``) or of a committee's folder (every
            ``member_k/best.pt``, see ``equivar train --committee``), or a list of these (a
            committee; members may differ in cutoff).
        device: ``"auto"`` (CUDA when available, else CPU; default), ``"cpu"``, ``"cuda:0"``...
        dtype: ``"float32"``/``"float64"``; default None keeps each model's own dtype.
            Checkpoints are rebuilt in ``dtype``; modules are copied and cast; exported
            potentials run on the device and in the dtype they were exported for.
        skin: neighbour-list skin (Angstrom). 0 (default) rebuilds the graph at every call; with
            ``skin > 0`` the graph is built at ``cutoff + skin`` and reused while no atom has
            moved more than ``skin / 2`` and the cell, pbc and atomic numbers are unchanged
            (edges beyond the cutoff contribute exactly zero).
        **kwargs: passed to ``ase.calculators.calculator.Calculator``.

    Raises:
        ValueError: atoms with species a model does not know (named), coincident atoms, bad
            device/dtype/skin, an unreadable checkpoint.

    Example:
        >>> from ase.build import molecule
        >>> from equivar.models import build
        >>> atoms = molecule("H2O")
        >>> atoms.calc = EquivarCalculator(build("potential", preset="S", species=["H", "O"]))
        >>> atoms.get_forces().shape
        (3, 3)
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model_or_checkpoint: Any,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        skin: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        members = _expand(model_or_checkpoint)
        if not members:
            raise ValueError("model_or_checkpoint is an empty list: a committee needs members")
        if not (isinstance(skin, (int, float)) and np.isfinite(skin) and skin >= 0):
            raise ValueError(f"skin must be a finite number >= 0 (Angstrom), got {skin!r}")
        self.device = _resolve_device(device)
        wanted = resolve_dtype(dtype)
        self.models = [_prepare(m, self.device, wanted) for m in members]
        dtypes = {_dtype_of(m) for m in self.models}
        if len(dtypes) > 1:
            raise ValueError(f"committee members have different dtypes {dtypes}; pass dtype=...")
        self.dtype = dtypes.pop()
        self.skin = float(skin)
        #: graphs built so far (a neighbour-list rebuild counter, for tests and benchmarks)
        self.neighbor_list_builds = 0
        self._cache: dict[float, dict] = {}

    @property
    def model(self) -> torch.nn.Module:
        """The model (the first member of a committee)."""
        return self.models[0]

    # ------------------------------------------------------------------ graphs

    def _check_species(self, numbers: np.ndarray) -> None:
        for m in self.models:
            check_species(numbers, m.species)

    def _graph(self, atoms: ase.Atoms, cutoff: float, use_cache: bool) -> Data:
        """The graph of ``atoms`` at ``cutoff`` (+ skin), rebuilt only when needed."""
        import ase
        from torch_geometric.data import Data

        # a bare copy: atoms_fields would otherwise read our own previous results as targets
        bare = ase.Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        bare.set_initial_charges(atoms.get_initial_charges())
        bare.info.update({k: atoms.info[k] for k in ("charge", "spin") if k in atoms.info})
        fields, _ = atoms_fields(bare, self.dtype)
        cached = self._cache.get(cutoff) if use_cache else None
        if (
            cached is not None
            and np.array_equal(cached["numbers"], atoms.numbers)
            and np.array_equal(cached["pbc"], atoms.pbc)
            and np.array_equal(cached["cell"], atoms.cell.array)
            and np.max(np.linalg.norm(atoms.positions - cached["positions"], axis=1), initial=0)
            < 0.5 * self.skin
        ):
            check_positions(atoms.positions)
            edge_index, shifts = cached["edge_index"], cached["shifts"]
        else:
            edge_index, shifts = checked_graph(fields, cutoff + self.skin)
            self.neighbor_list_builds += 1
            if use_cache:
                self._cache[cutoff] = {
                    "numbers": atoms.numbers.copy(),
                    "pbc": atoms.pbc.copy(),
                    "cell": atoms.cell.array.copy(),
                    "positions": atoms.positions.copy(),
                    "edge_index": edge_index,
                    "shifts": shifts,
                }
        return Data(**fields, **{K.EDGE_INDEX: edge_index, K.EDGE_SHIFTS: shifts})

    def _evaluate(
        self, structures: Sequence[ase.Atoms], use_cache: bool, offset: int | None = None
    ) -> list[dict]:
        """Every member on every structure (one model call per member and cutoff); errors name
        ``structures[offset + k]`` unless ``offset`` is None."""
        from torch_geometric.data import Batch

        def named(k: int, err: Exception) -> Exception:
            return err if offset is None else type(err)(f"structures[{offset + k}]: {err}")

        for k, atoms in enumerate(structures):
            try:
                self._check_species(atoms.numbers)
            except ValueError as err:
                raise named(k, err) from err
        outputs: list[list[dict[str, np.ndarray]]] = [[] for _ in structures]
        graphs: dict[float, Data] = {}
        for model in self.models:
            cutoff = float(model.cutoff)
            if cutoff not in graphs:
                data = []
                for k, atoms in enumerate(structures):
                    try:
                        data.append(self._graph(atoms, cutoff, use_cache))
                    except (ValueError, TypeError) as err:
                        raise named(k, err) from err
                batch = data[0] if len(data) == 1 else Batch.from_data_list(data)
                graphs[cutoff] = batch.to(self.device)
            batch = graphs[cutoff]
            out = model(batch, create_graph=False)
            sizes = [len(a) for a in structures]
            node_energy = out[K.NODE_ENERGY].detach().cpu().double().numpy()  # [n_nodes]
            if K.FORCES not in out:
                raise ValueError("the model was built with forces=False; the calculator needs them")
            forces = out[K.FORCES].detach().cpu().double().numpy()  # [n_nodes, 3]
            energy = out[K.ENERGY].detach().cpu().double().numpy().reshape(-1)  # [n_graphs]
            stress = out.get(K.STRESS)
            stress = None if stress is None else stress.detach().cpu().double().numpy()
            starts = np.concatenate([[0], np.cumsum(sizes)])
            for g, atoms in enumerate(structures):
                a, b = starts[g], starts[g + 1]
                res = {"energy": energy[g], "energies": node_energy[a:b], "forces": forces[a:b]}
                if stress is not None and atoms.pbc.any() and np.isfinite(stress[g]).all():
                    res["stress"] = stress[g].reshape(3, 3)  # [3, 3]
                outputs[g].append(res)
        return [self._combine(member_results) for member_results in outputs]

    @staticmethod
    def _combine(member_results: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        """Committee mean (and spread) of one structure's results, in ASE's conventions."""
        results: dict[str, Any] = {}
        names = set.intersection(*(set(r) for r in member_results))
        for name in ("energy", "energies", "forces", "stress"):
            if name not in names:
                continue
            values = np.stack([np.asarray(r[name], dtype=np.float64) for r in member_results])
            mean = values.mean(axis=0)
            std = values.std(axis=0) if len(member_results) > 1 else None
            if name == "stress":
                mean = full_to_voigt(mean)  # [6]
                std = None if std is None else full_to_voigt(std)
            results[name] = float(mean) if name == "energy" else mean
            if std is not None and name != "energies":
                results[f"{name}_std"] = float(std) if name == "energy" else std
        results["free_energy"] = results["energy"]
        return results

    # ------------------------------------------------------------------ ASE interface

    def calculate(
        self,
        atoms: ase.Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """Compute every property at once (ASE calls this; use ``atoms.get_forces()`` etc.)."""
        super().calculate(atoms, properties, system_changes)
        self.results = self._evaluate([self.atoms], use_cache=self.skin > 0)[0]

    def calculate_batch(
        self, structures: Sequence[ase.Atoms], batch_size: int | None = None
    ) -> list[dict[str, Any]]:
        """Evaluate many structures in batched model calls (e.g. for batched relaxation).

        Structures may differ in size, species and periodicity. Nothing is attached to them and
        the calculator's own ``results`` are left alone.

        Args:
            structures: the ``ase.Atoms`` to evaluate.
            batch_size: structures per model call. Default None: all in one call.

        Returns:
            One dict per structure with the keys of :attr:`results` (``energy``, ``forces``,
            ... and the ``*_std`` of a committee), in ASE's units and conventions.
        """
        import ase

        items = list(structures)
        for k, atoms in enumerate(items):
            if not isinstance(atoms, ase.Atoms):
                raise TypeError(f"structures[{k}] is a {type(atoms).__name__}, not ase.Atoms")
        if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        size = batch_size or max(len(items), 1)
        results: list[dict[str, Any]] = []
        for start in range(0, len(items), size):
            results += self._evaluate(items[start : start + size], False, offset=start)
        return results


def as_calculator(model_or_checkpoint: Any, **options: Any) -> EquivarCalculator:
    """``model_or_checkpoint`` itself if it is a calculator, else a new one with ``options``."""
    if isinstance(model_or_checkpoint, EquivarCalculator):
        return model_or_checkpoint
    return EquivarCalculator(model_or_checkpoint, **options)
