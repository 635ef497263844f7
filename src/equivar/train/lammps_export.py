"""LAMMPS deployment: a potential as an AOTInductor package that ``pair_style equivar`` runs.

A LAMMPS pair style sees, on each MPI rank, its ``n_local`` owned atoms followed by ghost atoms
(copies of atoms owned by other ranks, and the periodic images: LAMMPS never hands a pair style
a cell shift). So the program exported here has the pair style's signature, not the dataset's:

    inputs  ``pos [n_nodes, 3]`` float (local atoms first, then ghosts), ``z [n_nodes]`` int64,
            ``edge_index [2, n_edges]`` int64 (directed pairs ``j -> i`` within the cutoff, both
            directions, ghost-ghost pairs included; no shifts), ``local [n_nodes]`` float (1 for
            the rank's own atoms, 0 for ghosts)
    outputs ``energy []`` (sum of the local atoms' energies), ``node_energy [n_nodes]``,
            ``forces [n_nodes, 3]`` (``-d energy / d pos`` on every atom, ghosts included: LAMMPS
            sums the ghosts' forces back onto their owners), ``virial [3, 3]``
            (``sum_i pos_i (x) forces_i`` over all atoms: LAMMPS's sign, ``W = -dE/d strain``)

Why the energy of local atoms only, with ghosts out to ``num_layers x cutoff``: after ``L``
message-passing layers an atom's energy depends on every atom within ``L x cutoff`` (through
chains of edges). The atoms of a ghost shell that deep are all present, so each local atom's
energy is exact, and the gradient of the local energies with respect to every position (ghosts
included) is this rank's exact share of the forces; summed over ranks by LAMMPS's reverse
communication, the forces are those of the whole system. (The alternative, a ghost exchange
after every layer as ML-IAP does, computes less on ghosts but needs the model cut into per-layer
programs and an MPI exchange inside its forward and backward; examples/lammps/README.md
compares the two.)

The package (one ``.pt2``) holds the ``torch.export`` program, its AOTInductor build (C++
compiled for this machine's CPU: what the pair style loads through libtorch, no Python), and
metadata the pair style reads with ``AOTIModelPackageLoader::get_metadata``: the format tag,
atomic numbers of the species, cutoff, number of layers and dtype.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from equivar import keys as K
from equivar._version import versions
from equivar.atomic import atomic_write_bytes
from equivar.dtypes import resolve_dtype
from equivar.models.exported import METADATA_FILE

__all__ = ["LAMMPS_FORMAT", "LAMMPS_INPUTS", "LAMMPS_OUTPUTS", "export_lammps",
           "lammps_reference", "load_lammps_package", "read_lammps_metadata"]  # fmt: skip

#: the format tag in the package's metadata (``pair_style equivar`` refuses any other)
LAMMPS_FORMAT = "equivar-lammps/1"
#: names of the program's inputs, in order
LAMMPS_INPUTS = (K.POSITIONS, K.ATOMIC_NUMBERS, K.EDGE_INDEX, "local")
#: names of the program's outputs, in order
LAMMPS_OUTPUTS = (K.ENERGY, K.NODE_ENERGY, K.FORCES, K.VIRIAL)


class _Traced(nn.Module):
    """The traced graph behind named arguments (the program's signature)."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.aten = graph

    def forward(self, pos, z, edge_index, local):
        return self.aten(pos, z, edge_index, local)


def _local_function(model: nn.Module):
    """The model as the pair style's function (see the module docstring).

    Shapes:
        pos [n_nodes, 3], z [n_nodes], edge_index [2, n_edges], local [n_nodes]
        -> energy [], node_energy [n_nodes], forces [n_nodes, 3], virial [3, 3]
    """

    def run(pos, z, edge_index, local):
        with torch.enable_grad():
            pos = pos.detach().requires_grad_(True)
            data = {K.POSITIONS: pos, K.ATOMIC_NUMBERS: z, K.EDGE_INDEX: edge_index}
            # the model's own derivatives are off (they would differentiate every atom's
            # energy); create_graph keeps node_energy attached to pos for the gradient below
            node_energy = model(data, create_graph=True)[K.NODE_ENERGY]  # [n_nodes]
            energy = (node_energy * local).sum()
            (grad,) = torch.autograd.grad(energy, pos)
        forces = -grad  # [n_nodes, 3]
        virial = pos.detach().transpose(0, 1) @ forces  # [3, 3]: sum_i pos_i (x) forces_i
        return energy.detach(), node_energy.detach(), forces, virial

    return run


def lammps_reference(model: nn.Module, pos, z, edge_index, local) -> tuple[torch.Tensor, ...]:
    """The eager model evaluated as the exported program is (same inputs and outputs): the
    reference that :func:`export_lammps` checks the program and its build against."""
    flags = _prepare(model)
    try:
        return _local_function(model)(pos, z, edge_index, local)
    finally:
        _restore(model, flags)


def _prepare(model: nn.Module) -> dict[str, Any]:
    """Eval mode, no derivatives of the model's own, no value-dependent checks; returns the
    flags to restore."""
    names = ("training", "compute_forces", "compute_stress", "validate")
    saved = {name: getattr(model, name) for name in names}
    model.eval()
    model.compute_forces, model.compute_stress, model.validate = False, False, False
    return saved


def _restore(model: nn.Module, saved: dict[str, Any]) -> None:
    model.train(saved["training"])
    for name in ("compute_forces", "compute_stress", "validate"):
        setattr(model, name, saved[name])


def _resolve(model_or_checkpoint: Any, dtype: torch.dtype | None) -> nn.Module:
    """The potential to export (shared with ``export_model``)."""
    from equivar.train.export import resolve_potential

    return resolve_potential(model_or_checkpoint, dtype, caller="export_lammps")


def _example_graph(example: Any, model: nn.Module, dtype: torch.dtype):
    """The molecule to trace with: an ``ase.Atoms``, a structure file (first frame), or None
    for 6 atoms of the model's species in general position (seed 0)."""
    import ase
    import ase.io
    import numpy as np

    from equivar.data import from_ase

    if example is None:
        rng = np.random.default_rng(0)
        positions = [np.zeros(3)]
        while len(positions) < 6:  # each 1.0-1.6 A from an earlier atom, >= 0.9 A from all
            step = rng.normal(size=3)
            candidate = positions[int(rng.integers(len(positions)))] + step / np.linalg.norm(
                step) * rng.uniform(1.0, 1.6)
            if np.linalg.norm(np.asarray(positions) - candidate, axis=1).min() >= 0.9:
                positions.append(candidate)
        numbers = [int(z) for z in model.species]
        numbers = [numbers[k % len(numbers)] for k in range(6)]
        example = ase.Atoms(numbers=numbers, positions=np.asarray(positions))
    elif isinstance(example, (str, os.PathLike)):
        if not Path(example).is_file():
            raise FileNotFoundError(f"example structure {str(example)!r} does not exist")
        example = ase.io.read(example, index=0)
    if not isinstance(example, ase.Atoms):
        raise TypeError(f"example must be an ase.Atoms, a structure file or None, got "
                        f"{type(example).__name__}")
    if example.pbc.any():
        raise ValueError("the example for a LAMMPS export must be a molecule (no periodic "
                         "boundaries): LAMMPS hands the model ghost atoms, never cell shifts")
    return from_ase(example, model.cutoff, dtype=dtype)


def _example_inputs(graph, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Pair-style inputs from an example graph: two copies side by side (every traced size is
    >= 2, so none is specialised), periodic images unrolled into ghost atoms, the second copy's
    atoms marked as ghosts.

    Shapes:
        -> pos [n_nodes, 3], z [n_nodes], edge_index [2, n_edges], local [n_nodes]
    """
    pos, z = graph.pos.to(dtype), graph.z.long()
    edge_index = graph.edge_index.long()
    n = pos.shape[0]
    pos2 = torch.cat([pos, pos + torch.tensor([100.0, 0.0, 0.0], dtype=dtype)])
    z2 = torch.cat([z, z])
    edges2 = torch.cat([edge_index, edge_index + n], dim=1)
    local = torch.cat([torch.ones(n, dtype=dtype), torch.zeros(n, dtype=dtype)])
    local[0] = 0.0  # not all local atoms come first in the trace: no hidden assumption
    return tuple(t.contiguous() for t in (pos2, z2, edges2, local))


def _trace(model: nn.Module, inputs: tuple[torch.Tensor, ...]):
    """``torch.export`` program of the pair-style function, dynamic in n_nodes and n_edges."""
    from equivar.train.export import trace_symbolic

    try:
        aten_graph = trace_symbolic(_local_function(model), inputs)
        n_nodes = torch.export.Dim("n_nodes", min=1)
        n_edges = torch.export.Dim("n_edges", min=0)
        dynamic = {"pos": {0: n_nodes}, "z": {0: n_nodes}, "edge_index": {1: n_edges},
                   "local": {0: n_nodes}}  # fmt: skip
        return torch.export.export(_Traced(aten_graph), inputs, dynamic_shapes=dynamic)
    except Exception as err:
        raise RuntimeError(f"torch.export of the potential for LAMMPS failed: "
                           f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                           ) from err


def _compare(label: str, got, ref, dtype: torch.dtype) -> dict[str, float]:
    """Largest absolute differences per output; raise beyond the dtype's tolerance."""
    tol = 1e-8 if dtype == torch.float64 else 1e-4
    errors = {}
    for name, a, b in zip(LAMMPS_OUTPUTS, got, ref, strict=True):
        a, b = a.detach().double(), b.detach().double()
        err = float((a - b).abs().max()) if a.numel() else 0.0
        scale = float(b.abs().max()) + 1.0 if b.numel() else 1.0
        if not err <= tol * scale:  # also catches NaN
            raise RuntimeError(f"the {label} disagrees with the eager model on the example: max "
                               f"|{name} difference| = {err:.3g} (tolerance {tol * scale:.3g})")
        errors[name] = err
    return errors


def export_lammps(
    model_or_checkpoint: Any,
    path: str | os.PathLike,
    *,
    example: Any = None,
    dtype: str | torch.dtype | None = None,
) -> Path:
    """Export a potential for ``pair_style equivar``: torch.export program + AOTInductor build.

    Args:
        model_or_checkpoint: a potential (``build("potential", ...)``) or its checkpoint path.
        path: destination ``.pt2``.
        example: a molecule to trace with (``ase.Atoms``, a structure file, or None for a
            small random molecule of the model's species); any size works afterwards.
        dtype: ``"float32"``/``"float64"`` (default: the model's). The pair style refuses a
            package whose dtype differs from the one its ``pair_style`` line asks for.

    Returns:
        The path written (atomically, after the build reproduced the eager model on the
        example: 1e-8 in float64, 1e-4 in float32, relative to each output's size).

    Raises:
        FileNotFoundError, ValueError: bad checkpoint, example or path.
        RuntimeError: tracing or AOTInductor compilation failed, or the result disagrees with
            the eager model.

    Example:
        >>> export_lammps("runs/ethanol/best.pt", "ethanol.pt2", dtype="float64")  # doctest: +SKIP
    """
    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"the LAMMPS package's path must end in .pt2, got {str(path)!r}")
    model = _resolve(model_or_checkpoint, resolve_dtype(dtype))
    param = next(model.parameters())
    dtype = param.dtype
    if param.device.type != "cpu":
        model = model.cpu()
    graph = _example_graph(example, model, dtype)
    if graph.edge_index.shape[1] < 1:
        raise ValueError(f"the example structure has no edge within the cutoff ({model.cutoff} "
                         "Angstrom); give one whose atoms have neighbours")
    inputs = _example_inputs(graph, dtype)
    saved = _prepare(model)
    try:
        program = _trace(model, inputs)
        ref = _local_function(model)(*inputs)
    finally:
        _restore(model, saved)
    errors = _compare("exported program", program.module()(*inputs), ref, dtype)
    meta = _metadata(model, dtype, errors)
    files = _compile(program, meta)
    buffer = io.BytesIO()
    from torch.export.pt2_archive._package import package_pt2

    package_pt2(buffer, exported_programs={"model": program}, aoti_files={"model": files},
                extra_files={METADATA_FILE: json.dumps(meta, indent=1)})
    runner = _load_runner(buffer)
    _compare("AOTInductor build", runner(*inputs), ref, dtype)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _metadata(model: nn.Module, dtype: torch.dtype, errors: dict[str, float]) -> dict[str, Any]:
    """What the pair style and :func:`read_lammps_metadata` read."""
    return {
        "format": LAMMPS_FORMAT, "inputs": list(LAMMPS_INPUTS), "outputs": list(LAMMPS_OUTPUTS),
        "species": [int(z) for z in model.species], "cutoff": float(model.cutoff),
        "num_layers": len(model.backbone.blocks), "dtype": str(dtype).removeprefix("torch."),
        "check": errors, "versions": versions(),
    }  # fmt: skip


def _compile(program, meta: dict[str, Any]) -> list:
    """AOTInductor files of ``program``, with the metadata the C++ side reads (strings)."""
    import torch._inductor

    strings = {"equivar_format": meta["format"],
               "species": " ".join(str(z) for z in meta["species"]),
               "cutoff": repr(meta["cutoff"]), "num_layers": str(meta["num_layers"]),
               "dtype": meta["dtype"]}  # fmt: skip
    try:
        gm = program.module(check_guards=False)
        args, kwargs = program.example_inputs
        options = {"aot_inductor.package": True, "aot_inductor.metadata": strings}
        files = torch._inductor.aot_compile(gm, args, kwargs, options=options)
    except Exception as err:
        raise RuntimeError(f"AOTInductor compilation for LAMMPS failed ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else ''}); a C++ compiler "
                           "(g++) is needed") from err
    if not isinstance(files, list):
        raise RuntimeError(f"AOTInductor returned {type(files).__name__}, not a file list")
    return files


def _load_runner(source: io.BytesIO | str):
    """The AOTInductor build of a package, callable on the program's inputs."""
    from torch.export.pt2_archive._package import load_pt2

    if isinstance(source, io.BytesIO):
        source.seek(0)
    return load_pt2(source).aoti_runners["model"]


def read_lammps_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a LAMMPS package (species, cutoff, num_layers, dtype, check errors).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a LAMMPS package written by :func:`export_lammps`.
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LAMMPS package {str(path)!r} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_FILE}")),
                        None)
            raw = None if name is None else archive.read(name)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{str(path)!r} is truncated or corrupt, or not a .pt2 archive "
                         f"({type(err).__name__}: {err})") from None
    meta = json.loads(raw) if raw is not None else {}
    if meta.get("format") != LAMMPS_FORMAT:
        raise ValueError(f"{str(path)!r} is not a LAMMPS package (format {meta.get('format')!r}, "
                         f"expected {LAMMPS_FORMAT!r}); write one with equivar export --lammps")
    return meta


def load_lammps_package(path: str | os.PathLike):
    """The AOTInductor build of a LAMMPS package as a Python callable
    ``(pos, z, edge_index, local) -> (energy, node_energy, forces, virial)`` (machine code from
    the file runs: load only packages you built)."""
    read_lammps_metadata(path)
    return _load_runner(str(path))
