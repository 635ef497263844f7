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

Program signature (all inputs contiguous; ``n_graphs`` structures in one call):
    inputs  ``pos [n_nodes, 3]`` float, ``z [n_nodes]`` int64, ``edge_index [2, n_edges]`` int64,
            ``shifts [n_edges, 3]`` float, ``cell [n_graphs, 3, 3]`` float, ``batch [n_nodes]``
            int64, ``total_charge [n_graphs]`` float, ``spin [n_graphs]`` float
    outputs ``energy [n_graphs]``, ``node_energy [n_nodes]``, ``forces [n_nodes, 3]``,
            ``stress [n_graphs, 3, 3]`` (NaN where the cell has no volume), ``virial [n_graphs,
            3, 3]``, with the edge convention and units of :mod:`equivar.keys`.

The raw program does not check atomic numbers (an unknown element would index a wrong row);
:func:`load_exported` wraps it in an :class:`ExportedPotential` that does, and that takes the same
batches and returns the same dict as the eager model.
"""

from __future__ import annotations

import copy
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from equivar import keys as K

__all__ = ["ExportedPotential", "export_model", "load_exported", "read_metadata"]

#: names of the program's positional inputs and outputs, in order
INPUTS = (K.POSITIONS, K.ATOMIC_NUMBERS, K.EDGE_INDEX, K.EDGE_SHIFTS, K.CELL, K.BATCH,
          K.TOTAL_CHARGE, K.SPIN)  # fmt: skip
OUTPUTS = (K.ENERGY, K.NODE_ENERGY, K.FORCES, K.STRESS, K.VIRIAL)
FORMAT = "equivar-exported-potential/1"
_META = "equivar.json"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


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


def _as_inputs(data, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The program's inputs from a Data/Batch/dict (defaults filled in, contiguous, cast)."""
    from equivar.models.inputs import read_inputs

    g = read_inputs(data)
    f = dict(dtype=dtype, device=device)
    i = dict(dtype=torch.long, device=device)
    values = (g.pos.to(**f), g.z.to(**i), g.edge_index.to(**i), g.shifts.to(**f), g.cell.to(**f),
              g.batch.to(**i), g.total_charge.to(**f), g.spin.to(**f))  # fmt: skip
    return tuple(v.detach().contiguous() for v in values)


def _resolve_model(model_or_checkpoint: Any, dtype: torch.dtype | None) -> nn.Module:
    from equivar.models.potential import PotentialModel

    if isinstance(model_or_checkpoint, (str, os.PathLike)):
        from equivar.train.checkpoint import model_from_checkpoint_data, read_checkpoint

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
        raise TypeError("export_model needs a potential (build('potential', ...)) or the path of "
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
        from equivar.testing import random_molecule_batch

        species = list(model.species)[:4]
        return random_molecule_batch(n_graphs=1, n_atoms=5, species=species,
                                     cutoff=model.cutoff, dtype=dtype, seed=0).get_example(0)
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
    tol = 1e-8 if dtype == torch.float64 else 1e-4
    for key, err in errors.items():
        scale = float(torch.nan_to_num(ref[key].detach().abs().double(), nan=0.0).max()) + 1.0
        if not err <= tol * scale:  # also catches NaN
            raise RuntimeError(f"the {name} disagrees with the eager model on the example: "
                               f"max |{key} difference| = {err:.3g} (tolerance {tol * scale:.3g})")


def _trace_and_check(model: nn.Module, graph, dtype: torch.dtype, device: torch.device):
    """``(ExportedProgram, max errors against eager per check, eager reference function)``."""
    import torch.fx.experimental._config as fx_config
    from torch._subclasses.fake_tensor import FakeTensor
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch_geometric.data import Batch

    # Two copies of the example: every traced size is >= 2, so none is specialised to 0 or 1.
    pair = _as_inputs(Batch.from_data_list([graph, graph]), dtype, device)
    single = _as_inputs(Batch.from_data_list([graph]), dtype, device)
    try:
        with torch.no_grad(), fx_config.patch(use_duck_shape=False):
            aten_graph = make_fx(_flat_function(model), tracing_mode="symbolic",
                                 _allow_non_fake_inputs=True)(*pair)
        for node in aten_graph.graph.find_nodes(op="get_attr"):
            if isinstance(getattr(aten_graph, node.target), FakeTensor):
                raise RuntimeError(f"traced constant {node.target!r} has no value")
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
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        dtype = _DTYPES[dtype]
    model = _resolve_model(model_or_checkpoint, dtype)
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
        "aoti": bool(aoti), "check": checks[-1], "versions": _versions(),
    }  # fmt: skip
    aoti_files = None
    if aoti:
        aoti_files = _compile_aoti(program, meta)
    buffer = io.BytesIO()
    from torch.export.pt2_archive._package import package_pt2

    package_pt2(buffer, exported_programs={"model": program},
                aoti_files=None if aoti_files is None else {"model": aoti_files},
                extra_files={_META: json.dumps(meta, indent=1)})
    if aoti:  # run the compiled build from the written bytes before declaring success
        loaded = _read(buffer, "aoti", label=str(path))
        for inputs, ref in eager:
            _check("AOTInductor build", _max_errors(loaded.program(*inputs), ref), ref, dtype)
    _write_bytes(buffer.getvalue(), path)
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


def _versions() -> dict[str, str]:
    from equivar.train.checkpoint import versions

    return versions()


class ExportedPotential(nn.Module):
    """A loaded export, called like the eager potential: ``potential(batch) -> dict``.

    Returns ``energy [n_graphs]``, ``node_energy [n_nodes]``, ``forces [n_nodes, 3]`` and, when
    any structure is periodic (or the model was built with ``stress=True``), ``stress`` and
    ``virial [n_graphs, 3, 3]`` (NaN stress for non-periodic structures of a mixed batch), all
    detached: this is inference only. Atomic numbers outside :attr:`species` raise
    ``ValueError``; inputs are cast to the export's dtype.

    Attributes:
        species, cutoff, dtype: of the exported model.
        backend: ``"aoti"`` (compiled C++) or ``"export"`` (the ``ExportedProgram``'s module).
        metadata: the JSON stored with the program (config, versions, export check errors).

    Shapes:
        data: a PyG ``Data``/``Batch`` (or dict) with pos [n_nodes, 3], z [n_nodes],
        edge_index [2, n_edges], and optionally shifts, cell, pbc, batch, total_charge, spin.
    """

    def __init__(self, program: Any, metadata: dict[str, Any], backend: str) -> None:
        super().__init__()
        #: the ExportedProgram's module (parameters visible) or the AOTI runner (opaque)
        self.program = program
        self.metadata = metadata
        self.backend = backend
        self.species = list(metadata["species"])
        self.cutoff = float(metadata["cutoff"])
        self.dtype = _DTYPES[metadata["dtype"]]
        self.device = torch.device(metadata.get("device", "cpu"))
        self.compute_stress = metadata.get("stress")
        #: check atomic numbers against ``species`` on every call (one device sync)
        self.validate = True
        self.register_buffer("_species", torch.tensor(self.species), persistent=False)

    def forward(self, data, *, create_graph: bool | None = None) -> dict[str, torch.Tensor]:
        """Energy, forces (and stress) of every structure in ``data`` (see class docstring)."""
        from equivar.models.inputs import read_inputs

        if create_graph:
            raise ValueError("an exported potential is inference only: it has no autograd graph "
                             "(create_graph=True); train the eager model instead")
        inputs = _as_inputs(data, self.dtype, self.device)
        z = inputs[1]
        if self.validate:
            bad = ~torch.isin(z, self._species.to(z.device))
            if bool(bad.any()):
                from ase.data import chemical_symbols

                unknown = sorted({int(v) for v in z[bad].tolist()})
                names = [chemical_symbols[v] if 0 < v < 119 else str(v) for v in unknown]
                raise ValueError(f"atomic numbers {unknown} ({', '.join(names)}) are not among "
                                 f"the exported model's species {self.species}")
        with torch.no_grad():
            values = self.program(*inputs)
        out = dict(zip(OUTPUTS, values, strict=True))
        stress = self.compute_stress
        if stress is None:
            stress = bool(read_inputs(data).pbc.any())
        if not stress:
            del out[K.STRESS], out[K.VIRIAL]
        return out

    def train(self, mode: bool = True) -> ExportedPotential:
        """Only the flag: an exported program has no train mode (it is always inference)."""
        self.training = bool(mode)
        return self

    def extra_repr(self) -> str:
        return (f"species={self.species}, cutoff={self.cutoff}, dtype={self.dtype}, "
                f"backend={self.backend!r}")


def _peek(source: str | io.BytesIO, label: str) -> tuple[dict[str, Any], bool]:
    """The stored metadata and whether an AOTInductor build is present, read from the zip
    directory alone (fast: nothing is deserialised)."""
    import zipfile

    try:
        with zipfile.ZipFile(source) as archive:
            names = archive.namelist()
            meta_name = next((n for n in names if n.endswith(f"/extra/{_META}")), None)
            raw = None if meta_name is None else archive.read(meta_name)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"exported model {label!r} is truncated or corrupt, or not a .pt2 "
                         f"archive ({type(err).__name__}: {err})") from None
    if raw is None:
        raise ValueError(f"{label!r} is a .pt2 archive but not an equivar export (no {_META}); "
                         "write one with equivar export / export_model")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{label!r} has format {meta.get('format')!r}; this equivar reads "
                         f"{FORMAT!r}")
    return meta, any("/data/aotinductor/" in n for n in names)


def _read(source: str | io.BytesIO, backend: str, label: str) -> ExportedPotential:
    """Audit, then load, an export (see :mod:`equivar.train.audit`: torch's own loader would run
    code that a tampered file carries). The file is read once into memory, so the bytes
    audited are the bytes loaded."""
    from equivar.train.audit import audit_pt2, check_program

    if not isinstance(source, io.BytesIO):
        with open(source, "rb") as fh:
            source = io.BytesIO(fh.read())
    meta, has_aoti = _peek(source, label)
    if backend == "auto":
        backend = "aoti" if has_aoti else "export"
    if backend == "aoti" and not has_aoti:
        raise ValueError(f"{label!r} holds no AOTInductor build; export it with aoti=True "
                         "(--aoti) or load it with backend='export'")
    audit_pt2(source, label)
    try:
        source.seek(0)
        program, runner = _load_program(source, with_aoti=backend == "aoti")
    except Exception as err:  # serialisation and AOTI loader errors all mean "unreadable"
        raise ValueError(f"exported model {label!r} cannot be loaded ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'no details'}); it may be "
                         "corrupt, or written by another torch version or for another CPU"
                         ) from None
    check_program(program, label)
    if backend == "aoti":
        return ExportedPotential(runner, meta, backend).eval()
    # no guard function: torch builds it with exec() from code stored in the file; the same
    # input checks then run from the program's range constraints instead
    return ExportedPotential(program.module(check_guards=False), meta, backend).eval()


def _load_program(source: io.BytesIO, with_aoti: bool):
    """``(ExportedProgram, AOTI runner or None)``. Without ``with_aoti`` the AOTInductor build's
    shared library is never loaded (``load_pt2`` loads every build it finds: machine code)."""
    from torch.export.pt2_archive import _package

    load_programs = getattr(_package, "_load_exported_programs", None)
    if with_aoti or load_programs is None:
        contents = _package.load_pt2(source)
        return (contents.exported_programs["model"],
                contents.aoti_runners["model"] if with_aoti else None)
    from torch.export.pt2_archive.constants import ARCHIVE_VERSION_PATH, ARCHIVE_VERSION_VALUE

    with _package.PT2ArchiveReader(source) as reader:
        version = reader.read_string(ARCHIVE_VERSION_PATH)
        if version != ARCHIVE_VERSION_VALUE:
            raise ValueError(f"archive version {version} is not this torch's "
                             f"{ARCHIVE_VERSION_VALUE}")
        programs = load_programs(reader, reader.get_file_names(), None)
    return programs["model"], None


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON stored with an export (species, cutoff, dtype, config, versions, the export
    check's errors, ``aoti``), read without loading the program (milliseconds).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable equivar export.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model {str(path)!r} does not exist")
    return _peek(str(path), str(path))[0]


def load_exported(path: str | os.PathLike, *, backend: str = "export") -> ExportedPotential:
    """Load a file written by :func:`export_model` as an :class:`ExportedPotential`.

    Args:
        path: the ``.pt2`` file.
        backend: ``"export"`` (default: the exported program, safe for any file), ``"aoti"``
            (its AOTInductor build: compiled machine code) or ``"auto"`` (the AOTInductor build
            when the file has one, else the exported program).

    Opening a file runs none of its Python: torch's own ``.pt2`` loader would unpickle tampered
    weights, ``eval`` symbolic sizes and ``exec`` guard code from the file, so the archive is
    audited first and refused, as unsafe, when it holds any of these
    (:mod:`equivar.train.audit`). An AOTInductor build, however, is machine code that runs
    when loaded, which no audit can vet: it is loaded only when asked for (``"aoti"`` or
    ``"auto"``, ``equivar md --aoti``), for files you built yourself.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a truncated/corrupt file, an unsafe one (it would run code when loaded), a
            ``.pt2`` that is not an equivar export, a missing AOTInductor build for
            ``backend="aoti"``, an unknown backend.

    Example:
        >>> potential = load_exported("water.pt2")  # doctest: +SKIP
        >>> potential(batch)["forces"]  # doctest: +SKIP
    """
    if backend not in ("auto", "aoti", "export"):
        raise ValueError(f"backend must be 'auto', 'aoti' or 'export', got {backend!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model {str(path)!r} does not exist")
    return _read(str(path), backend, label=str(path))


def _write_bytes(data: bytes, path: Path) -> None:
    from equivar.train.checkpoint import atomic_write

    atomic_write(path, lambda fh: fh.write(data))

