"""Deployment without TorchScript: a potential as a ``torch.export`` program in one ``.pt2`` file.

The exported program maps explicit tensors to energy, per-atom energies, forces, stress and
virial. Forces and stress are derivatives of the energy, so the program has to contain the
backward pass. ``torch.export`` (torch 2.13) cannot trace ``torch.autograd.grad`` itself: its
pre-dispatch tracer lifts tensors that autograd saved for the backward of ``sqrt``, ``exp``,
``vector_norm``... as *fake* constants (pytorch/pytorch#146719) and a strict export graph-breaks on
``autograd.grad``. So the export is done in two steps:

1. ``make_fx(tracing_mode="symbolic")`` traces the whole eager forward, *including the autograd
   engine running the backward*, below the autograd layer into a graph of aten operations with
   symbolic sizes (duck sizing off, so that no size is unified with another by coincidence);
2. ``torch.export.export`` turns that graph into an ``ExportedProgram`` with dynamic sizes
   ``n_nodes >= 1``, ``n_edges >= 0``, ``n_graphs >= 1``: one export serves any structure.

The artefact is self-contained: the program carries the weights and the whole derivative graph,
no equivar, e3nn or Python model code is needed to run it (``torch.export.load`` in Python, or
AOTInductor from C++). Optionally the same file also holds an AOTInductor build of the program
(``aoti=True``: generated C++ compiled for this machine's CPU, a few hundred times faster than
the eager model on small molecules, but tied to the CPU instruction set it was built on).

The program's signature (:data:`~equivar.models.exported.INPUTS` ->
:data:`~equivar.models.exported.OUTPUTS`) and the loader, :func:`load_exported` with its
:class:`ExportedPotential` (which checks atomic numbers, takes the same batches and returns the
same dict as the eager model), live in :mod:`equivar.models.exported`, below the tasks, so that
simulation runs exports without importing training; they are re-exported here.
"""

from __future__ import annotations

import copy
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from equivar._version import versions
from equivar.atomic import atomic_write_bytes
from equivar.dtypes import resolve_dtype
from equivar.models.exported import (  # noqa: F401 (re-exported)
    FORMAT,
    INPUTS,
    METADATA_FILE,
    OUTPUTS,
    ExportedPotential,
    load_exported,
    program_inputs,
    read_export,
    read_metadata,
)

__all__ = ["ExportedPotential", "export_model", "load_exported", "read_metadata"]

class _Traced(nn.Module):
    """The traced graph behind named arguments (the exported program's signature)."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.aten = graph  # not self.graph: that name clashes with the unlifted GraphModule's

    def forward(self, pos, z, edge_index, shifts, cell, batch, total_charge, spin):
        return self.aten(pos, z, edge_index, shifts, cell, batch, total_charge, spin)


def _flat_function(model: nn.Module):
    """The model as a function of explicit tensors returning :data:`OUTPUTS`."""

    def run(pos, z, edge_index, shifts, cell, batch, total_charge, spin):
        data = dict(zip(INPUTS, (pos, z, edge_index, shifts, cell, batch, total_charge, spin),
                        strict=True))
        out = model(data, create_graph=False)
        return tuple(out[k] for k in OUTPUTS)

    return run


def resolve_potential(model_or_checkpoint: Any, dtype: torch.dtype | None,
                      caller: str = "export_model") -> nn.Module:  # fmt: skip
    """The potential to export: a module (copied and cast when ``dtype`` differs) or a
    checkpoint's, rebuilt in ``dtype`` (``caller`` names the exporter in the errors; the LAMMPS
    export shares this)."""
    from equivar.models.potential import PotentialModel

    if isinstance(model_or_checkpoint, (str, os.PathLike)):
        from equivar.models.checkpoint import model_from_checkpoint_data, read_checkpoint

        path = str(model_or_checkpoint)
        data = read_checkpoint(path)
        name = data["config"].get("name")
        if name != "potential":
            raise ValueError(f"checkpoint {path!r} holds a {name!r} model; only potentials "
                             "(energy, forces, stress) can be exported")
        try:
            return model_from_checkpoint_data(data, dtype)
        except (TypeError, ValueError) as err:
            raise ValueError(f"checkpoint {path!r} does not rebuild: {err}") from None
    if not isinstance(model_or_checkpoint, PotentialModel):
        raise TypeError(f"{caller} needs a potential (build('potential', ...)) or the path of "
                        f"its checkpoint, got {type(model_or_checkpoint).__name__}")
    model = model_or_checkpoint
    if dtype is not None and next(model.parameters()).dtype != dtype:
        model = copy.deepcopy(model).to(dtype)
    return model


def _example_graph(example: Any, model: nn.Module, dtype: torch.dtype):
    """One structure's graph to trace with (an Atoms, a structure file, a Data or None)."""
    import ase
    from torch_geometric.data import Data

    from equivar.data import from_ase

    if example is None:
        return _random_molecule([int(z) for z in model.species][:4], model.cutoff, dtype)
    if isinstance(example, (str, os.PathLike)):
        import ase.io

        path = Path(example)
        if not path.is_file():
            raise FileNotFoundError(f"example structure {str(path)!r} does not exist")
        try:
            example = ase.io.read(path, index=0)
        except Exception as err:  # ase raises many kinds for unreadable files
            raise ValueError(f"example structure {str(path)!r} cannot be read by ase.io.read: "
                             f"{err}") from None
    if isinstance(example, ase.Atoms):
        return from_ase(example, model.cutoff, dtype=dtype)
    if isinstance(example, Data):
        return example
    raise TypeError(f"example must be an ase.Atoms, a structure file, a torch_geometric Data or "
                    f"None, got {type(example).__name__}")


def _random_molecule(species: Sequence[int], cutoff: float, dtype: torch.dtype):
    """The default example: a molecule of 5 atoms drawn from ``species`` (seed 0), each placed
    0.9-1.8 Angstrom from an earlier one and no closer than 0.9 to any: atoms in general
    position, so the trace meets no coincidence. (The draws are those of
    :func:`equivar.testing.random_molecule_batch` with ``n_atoms=5, seed=0``, so exports stay
    the same as before this builder had its own copy.)

    Shapes:
        -> pos [5, 3], z [5], edge_index [2, n_edges], shifts [n_edges, 3]
    """
    import ase

    from equivar.data import from_ase

    n_atoms, min_distance = 5, 0.9
    rng = np.random.default_rng(0)
    rng.integers(n_atoms, n_atoms + 1)  # the fixture's draw of the atom count
    positions = [np.zeros(3)]
    while len(positions) < n_atoms:
        anchor = positions[int(rng.integers(len(positions)))]
        step = rng.normal(size=3)  # [3]
        candidate = anchor + step / np.linalg.norm(step) * rng.uniform(min_distance,
                                                                        2 * min_distance)
        if np.linalg.norm(np.asarray(positions) - candidate, axis=1).min() >= min_distance:
            positions.append(candidate)
    numbers = rng.choice(np.asarray(species), size=n_atoms)
    atoms = ase.Atoms(numbers=numbers, positions=np.asarray(positions))  # [n_atoms, 3]
    return from_ase(atoms, cutoff, dtype=dtype)


def _max_errors(got: Sequence[torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    """Largest absolute difference of each output (NaN stress of molecules compared as equal)."""
    out = {}
    for name, value in zip(OUTPUTS, got, strict=True):
        a, b = value.detach().double().cpu(), ref[name].detach().double().cpu()
        both_nan = torch.isnan(a) & torch.isnan(b)
        diff = torch.where(both_nan, torch.zeros_like(a), (a - b).abs())
        out[name] = float(diff.max()) if diff.numel() else 0.0
    return out


def _check(name: str, errors: dict[str, float], ref: dict[str, torch.Tensor], dtype) -> None:
    """Raise when an output error exceeds the dtype's tolerance, relative to the output's size."""
    tol = 1e-8 if dtype == torch.float64 else 1e-4
    for key, err in errors.items():
        scale = float(torch.nan_to_num(ref[key].detach().abs().double(), nan=0.0).max()) + 1.0
        if not err <= tol * scale:  # also catches NaN
            raise RuntimeError(f"the {name} disagrees with the eager model on the example: "
                               f"max |{key} difference| = {err:.3g} (tolerance {tol * scale:.3g})")


def trace_symbolic(function, inputs: tuple[torch.Tensor, ...]):
    """``make_fx`` trace of ``function(*inputs)`` with symbolic sizes, the autograd graph
    inside (step 1 of the module docstring; the LAMMPS export shares it).

    Raises:
        RuntimeError: a traced constant kept no value (a fake tensor).
    """
    import torch.fx.experimental._config as fx_config
    from torch._subclasses.fake_tensor import FakeTensor
    from torch.fx.experimental.proxy_tensor import make_fx

    with torch.no_grad(), fx_config.patch(use_duck_shape=False):
        aten_graph = make_fx(function, tracing_mode="symbolic",
                             _allow_non_fake_inputs=True)(*inputs)  # fmt: skip
    for node in aten_graph.graph.find_nodes(op="get_attr"):
        if isinstance(getattr(aten_graph, node.target), FakeTensor):
            raise RuntimeError(f"traced constant {node.target!r} has no value")
    return aten_graph


def _trace_and_check(model: nn.Module, graph, dtype: torch.dtype, device: torch.device):
    """``(ExportedProgram, max errors against eager per check, eager reference function)``."""
    from torch_geometric.data import Batch

    # Two copies of the example: every traced size is >= 2, so none is specialised to 0 or 1.
    pair = program_inputs(Batch.from_data_list([graph, graph]), dtype, device)
    single = program_inputs(Batch.from_data_list([graph]), dtype, device)
    try:
        aten_graph = trace_symbolic(_flat_function(model), pair)
        n_nodes = torch.export.Dim("n_nodes", min=1)
        n_edges = torch.export.Dim("n_edges", min=0)
        n_graphs = torch.export.Dim("n_graphs", min=1)
        dynamic = {"pos": {0: n_nodes}, "z": {0: n_nodes}, "edge_index": {1: n_edges},
                   "shifts": {0: n_edges}, "cell": {0: n_graphs}, "batch": {0: n_nodes},
                   "total_charge": {0: n_graphs}, "spin": {0: n_graphs}}  # fmt: skip
        program = torch.export.export(_Traced(aten_graph), pair, dynamic_shapes=dynamic)
    except Exception as err:
        raise RuntimeError(f"torch.export of the potential failed: {type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else ''}") from err
    # the eager outputs of the example (as two structures and alone, n_graphs = 1 unlike the
    # trace): the program, and later the AOTInductor build, must reproduce them
    eager = [(inputs, model(dict(zip(INPUTS, inputs, strict=True)), create_graph=False))
             for inputs in (pair, single)]
    exported = program.module()
    checks = []
    for inputs, ref in eager:
        checks.append(_max_errors(exported(*inputs), ref))
        _check("exported program", checks[-1], ref, dtype)
    return program, checks, eager


def export_model(
    model_or_checkpoint: Any,
    path: str | os.PathLike,
    *,
    example: Any = None,
    dtype: str | torch.dtype | None = None,
    aoti: bool = False,
) -> Path:
    """Export a potential's energy, forces and stress to a self-contained ``.pt2`` file.

    The program is traced on ``example`` but takes any number of atoms, edges and structures
    (dynamic sizes). Before writing, the exported program (and the AOTInductor build) are run on
    the example and compared with the eager model; a disagreement raises instead of writing a
    wrong file. The file is written atomically (temporary file, then rename).

    Args:
        model_or_checkpoint: a potential (``build("potential", ...)``) or a checkpoint path.
        path: destination, ending in ``.pt2``.
        example: the structure to trace with: an ``ase.Atoms``, a file ``ase.io.read`` reads
            (its first frame), a ``Data``, or None for a small random molecule of the model's
            species. It needs at least one edge within the cutoff.
        dtype: ``"float32"``/``"float64"`` (checkpoints are rebuilt, modules copied and cast);
            default: the model's dtype. The program runs in this dtype only.
        aoti: also compile the program with AOTInductor into the same file (needs a C++
            compiler; about a minute for a small model).

    Returns:
        The path written. Load it with :func:`load_exported`.

    Raises:
        FileNotFoundError: missing checkpoint or example file.
        ValueError: not a potential, a path without ``.pt2``, an example without edges.
        RuntimeError: tracing failed or the exported program disagrees with the eager model.

    Example:
        >>> from equivar.models import build
        >>> model = build("potential", preset="S", species=["H", "O"], num_channels=8)
        >>> export_model(model, "water.pt2")  # doctest: +SKIP
        >>> potential = load_exported("water.pt2")  # doctest: +SKIP
    """
    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"the exported model's path must end in .pt2, got {str(path)!r}")
    dtype = resolve_dtype(dtype)
    model = resolve_potential(model_or_checkpoint, dtype)
    param = next(model.parameters())
    dtype, device = param.dtype, param.device
    graph = _example_graph(example, model, dtype)
    if graph.edge_index.shape[1] < 1:
        raise ValueError(f"the example structure has no edge within the cutoff ({model.cutoff} "
                         "Angstrom); give one whose atoms have neighbours")
    # What we trace: eval mode, always forces and stress (no branch on periodicity; stress is
    # NaN for molecules), no value-dependent species check (ExportedPotential does it). The
    # flags are set on the model for the duration and restored (cheaper than a deep copy).
    flags = ("training", "compute_forces", "compute_stress", "validate")
    saved = {name: getattr(model, name) for name in flags}
    model.eval()
    model.compute_forces, model.compute_stress, model.validate = True, True, False
    try:
        program, checks, eager = _trace_and_check(model, graph, dtype, device)
    finally:
        model.train(saved.pop("training"))
        for name, value in saved.items():
            setattr(model, name, value)
    meta = {
        "format": FORMAT, "inputs": list(INPUTS), "outputs": list(OUTPUTS),
        "species": [int(z) for z in model.species], "cutoff": float(model.cutoff),
        "dtype": str(dtype).removeprefix("torch."), "device": str(device),
        "stress": model.compute_stress, "config": _plain(getattr(model, "config", {})),
        "aoti": bool(aoti), "check": checks[-1], "versions": versions(),
    }  # fmt: skip
    aoti_files = None
    if aoti:
        aoti_files = _compile_aoti(program, meta)
    buffer = io.BytesIO()
    from torch.export.pt2_archive._package import package_pt2

    package_pt2(buffer, exported_programs={"model": program},
                aoti_files=None if aoti_files is None else {"model": aoti_files},
                extra_files={METADATA_FILE: json.dumps(meta, indent=1)})
    if aoti:  # run the compiled build from the written bytes before declaring success
        loaded = read_export(buffer, "aoti", label=str(path))
        for inputs, ref in eager:
            _check("AOTInductor build", _max_errors(loaded.program(*inputs), ref), ref, dtype)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _compile_aoti(program, meta: dict[str, Any]) -> list:
    """AOTInductor files of ``program`` (C++ generated and compiled for this machine)."""
    import torch._inductor

    try:
        gm = program.module(check_guards=False)
        args, kwargs = program.example_inputs
        options = {"aot_inductor.package": True,
                   "aot_inductor.metadata": {"equivar_format": FORMAT,
                                             "species": json.dumps(meta["species"]),
                                             "cutoff": repr(meta["cutoff"])}}
        files = torch._inductor.aot_compile(gm, args, kwargs, options=options)
    except Exception as err:
        raise RuntimeError(f"AOTInductor compilation failed ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else ''}); export without "
                           "aoti=True (--aoti) for the portable program alone") from err
    if not isinstance(files, list):
        raise RuntimeError(f"AOTInductor returned {type(files).__name__}, not a file list; this "
                           "torch version cannot package it")
    return files


def _plain(value: Any) -> Any:
    """JSON-safe copy of a model config (int keys become strings)."""
    return json.loads(json.dumps(value, default=str))
