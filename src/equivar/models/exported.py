"""Loading ``.pt2`` exports: the program's signature, :class:`ExportedPotential` and
:func:`load_exported` (the writer, :func:`equivar.train.export.export_model`, is training's).

An export is a ``torch.export`` program in one ``.pt2`` archive, with ``equivar.json`` metadata
beside it. Its signature (all inputs contiguous; ``n_graphs`` structures in one call):
    inputs  ``pos [n_nodes, 3]`` float, ``z [n_nodes]`` int64, ``edge_index [2, n_edges]`` int64,
            ``shifts [n_edges, 3]`` float, ``cell [n_graphs, 3, 3]`` float, ``batch [n_nodes]``
            int64, ``total_charge [n_graphs]`` float, ``spin [n_graphs]`` float
    outputs ``energy [n_graphs]``, ``node_energy [n_nodes]``, ``forces [n_nodes, 3]``,
            ``stress [n_graphs, 3, 3]`` (NaN where the cell has no volume), ``virial [n_graphs,
            3, 3]``, with the edge convention and units of :mod:`equivar.keys`.

The raw program does not check atomic numbers (an unknown element would index a wrong row);
:func:`load_exported` wraps it in an :class:`ExportedPotential` that does, and that takes the
same batches and returns the same dict as the eager model. Simulation runs exports, and may not
import training, so loading lives here, below the tasks.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from equivar import keys as K
from equivar.dtypes import DTYPES

__all__ = ["FORMAT", "INPUTS", "METADATA_FILE", "OUTPUTS", "ExportedPotential", "load_exported",
           "program_inputs", "read_export", "read_metadata"]  # fmt: skip

#: names of the program's positional inputs, in order
INPUTS = (K.POSITIONS, K.ATOMIC_NUMBERS, K.EDGE_INDEX, K.EDGE_SHIFTS, K.CELL, K.BATCH,
          K.TOTAL_CHARGE, K.SPIN)  # fmt: skip
#: names of the program's outputs, in order
OUTPUTS = (K.ENERGY, K.NODE_ENERGY, K.FORCES, K.STRESS, K.VIRIAL)
#: the format tag stored in the metadata (a reader refuses any other)
FORMAT = "equivar-exported-potential/1"
#: the archive's extra file holding the metadata (JSON)
METADATA_FILE = "equivar.json"


def program_inputs(data, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The program's inputs (:data:`INPUTS`, in order) from a Data/Batch/dict: defaults filled
    in, detached, contiguous, floats cast to ``dtype``, integers int64, all on ``device``.

    Shapes:
        pos [n_nodes, 3], z [n_nodes], edge_index [2, n_edges], shifts [n_edges, 3],
        cell [n_graphs, 3, 3], batch [n_nodes], total_charge [n_graphs], spin [n_graphs]
    """
    from equivar.models.inputs import read_inputs

    g = read_inputs(data)
    f = dict(dtype=dtype, device=device)
    i = dict(dtype=torch.long, device=device)
    values = (g.pos.to(**f), g.z.to(**i), g.edge_index.to(**i), g.shifts.to(**f), g.cell.to(**f),
              g.batch.to(**i), g.total_charge.to(**f), g.spin.to(**f))  # fmt: skip
    return tuple(v.detach().contiguous() for v in values)


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
        self.dtype = DTYPES[metadata["dtype"]]
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
        inputs = program_inputs(data, self.dtype, self.device)
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
    try:
        with zipfile.ZipFile(source) as archive:
            names = archive.namelist()
            meta_name = next((n for n in names if n.endswith(f"/extra/{METADATA_FILE}")), None)
            raw = None if meta_name is None else archive.read(meta_name)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"exported model {label!r} is truncated or corrupt, or not a .pt2 "
                         f"archive ({type(err).__name__}: {err})") from None
    if raw is None:
        raise ValueError(f"{label!r} is a .pt2 archive but not an equivar export (no "
                         f"{METADATA_FILE}); write one with equivar export / export_model")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{label!r} has format {meta.get('format')!r}; this equivar reads "
                         f"{FORMAT!r}")
    return meta, any("/data/aotinductor/" in n for n in names)


def read_export(source: str | io.BytesIO, backend: str, label: str) -> ExportedPotential:
    """Audit, then load, an export (see :mod:`equivar.models.audit`: torch's own loader would
    run code that a tampered file carries). The file is read once into memory, so the bytes
    audited are the bytes loaded.

    Args:
        source: a file path, or the whole archive in memory (the writer checks its
            AOTInductor build from the bytes it is about to write).
        backend: ``"export"``, ``"aoti"`` or ``"auto"`` (see :func:`load_exported`).
        label: how to name the file in messages.

    Returns:
        The :class:`ExportedPotential`, in eval mode.

    Raises:
        ValueError: a corrupt or unsafe archive, one that is no equivar export, or a missing
            AOTInductor build for ``backend="aoti"``.
    """
    from equivar.models.audit import audit_pt2, check_program

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
    """Load a file written by :func:`~equivar.train.export.export_model` as an
    :class:`ExportedPotential`.

    Args:
        path: the ``.pt2`` file.
        backend: ``"export"`` (default: the exported program, safe for any file), ``"aoti"``
            (its AOTInductor build: compiled machine code) or ``"auto"`` (the AOTInductor build
            when the file has one, else the exported program).

    Opening a file runs none of its Python: torch's own ``.pt2`` loader would unpickle tampered
    weights, ``eval`` symbolic sizes and ``exec`` guard code from the file, so the archive is
    audited first and refused, as unsafe, when it holds any of these
    (:mod:`equivar.models.audit`). An AOTInductor build, however, is machine code that runs
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
    return read_export(str(path), backend, label=str(path))
