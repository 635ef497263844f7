"""Opening a stranger's file runs none of its code: checkpoints and exports are audited first.

A ``.pt`` checkpoint is read by torch's weights-only unpickler, which refuses to import or call
anything outside an allow-list of tensor-rebuilding functions; :func:`describe_refusal` tells a
file it refused as unsafe (a pickle that imports ``os.system``) from a corrupt one.

A ``.pt2`` export is more exposed. Reading one, torch 2.13 (``torch.export.load``,
``torch.export.pt2_archive._package.load_pt2``):

- unpickles with ``weights_only=False`` every weight or tensor constant whose payload config
  says ``use_pickle`` (``_load_state_dict``, ``_load_constants``);
- tries ``weights_only=True`` and then falls back to ``weights_only=False`` for the sample inputs
  and for legacy whole-file weights and constants (``deserialize_torch_artifact``);
- ``pickle.loads`` opaque constants and rebuilds TorchBind objects from theirs;
- evaluates every symbolic size expression of the graph with ``sympy.sympify``, which is
  ``eval`` (``_parse_sym_expr``);
- compiles the stored guard code with ``exec`` when the program's module is built
  (``_convert_guards_code_to_fn``, unless ``module(check_guards=False)``).

There is no switch that makes it safe, so :func:`audit_pt2` reads the archive the way torch
will, before torch does, and refuses it when any of these would run code: each entry torch would
unpickle must pass torch's own weights-only unpickler (a dry run), opaque and TorchBind objects
are refused outright, and each symbolic expression must parse to calls of sympy classes on
numbers and symbol names. The loader in :mod:`equivar.models.exported` never builds the guards
and checks with :func:`check_program` that the loaded graph calls only ATen operators and
arithmetic. Equivar exports contain none of the refused things, so nothing legitimate is lost.
An AOTInductor build is different: it is machine code and runs when loaded
(``backend="export"`` never loads it).
"""

from __future__ import annotations

import ast
import io
import json
import os
import pickle
import pickletools
import re
import zipfile
from typing import Any

__all__ = ["audit_pt2", "check_program", "describe_refusal", "pickle_imports", "unpickling_detail"]

_EXPORTS = "equivar exports never contain one"
#: the torch release whose ``.pt2`` loader this audit was written against (a test fails on any
#: other, so that an upgrade of torch brings a review of what its loader evaluates)
AUDITED_TORCH = "2.13"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\Z")
#: sympy names that torch writes into symbolic expressions (``srepr`` form)
_SYMPY_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs",
    "floor", "ceiling", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Equality", "Unequality",
    "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan", "And", "Or", "Not",
    "Piecewise", "ExprCondPair", "Tuple", "true", "false", "oo", "zoo", "nan", "pi", "E",
})  # fmt: skip
_OPCODES_THAT_IMPORT = ("GLOBAL", "STACK_GLOBAL", "INST")
#: bounds that keep evaluating a symbolic size expression cheap (a stranger's expression could
#: otherwise ask sympy for 10**(10**12) and hang the process): its length, its integers, and the
#: exponents of its powers
MAX_EXPRESSION_CHARS, MAX_INTEGER, MAX_EXPONENT = 4096, 2**64, 64


def pickle_imports(data: bytes) -> list[str]:
    """``module.name`` of every global a pickle would import, read with :mod:`pickletools`
    (opcodes are decoded, nothing is executed). ``STACK_GLOBAL`` takes its two names from the
    strings pushed before it (``'?'`` when they were built another way).

    Raises:
        ValueError: bytes that are not one complete pickle (truncated or garbage).
    """
    names, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                names.append(".".join(str(arg).split(" ", 1)))
            elif opcode.name == "STACK_GLOBAL":
                names.append(".".join(strings[-2:]) if len(strings) >= 2 else "?")
            elif isinstance(arg, str) and "UNICODE" in opcode.name:
                strings.append(arg)
    except Exception as err:  # genops raises ValueError, struct.error, ... on damaged bytes
        raise ValueError(f"not a complete pickle ({type(err).__name__}: {err})") from None
    return list(dict.fromkeys(names))


def _allowed_globals() -> set[str]:
    """The globals torch's weights-only unpickler accepts (for naming what it refused)."""
    try:
        from torch import _weights_only_unpickler as wou

        return set(wou._get_allowed_globals()) | set(wou._get_user_allowed_globals())
    except (ImportError, AttributeError):  # another torch: name every non-torch import
        return {"collections.OrderedDict"}


def _pickles_in(data: bytes) -> list[bytes]:
    """The pickle streams of a ``torch.save`` file: ``data.pkl`` of the zip format, or the
    leading pickles of the legacy format (whatever follows them is raw storage bytes)."""
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return [archive.read(n) for n in archive.namelist()
                    if n == "data.pkl" or n.endswith("/data.pkl")]  # fmt: skip
    streams, stream = [], io.BytesIO(data)
    for _ in range(4):  # magic number, protocol, system info, the object
        start = stream.tell()
        try:
            for _ in pickletools.genops(stream):
                pass
        except Exception:  # noqa: BLE001 - the raw storages after the pickles, or garbage
            break
        streams.append(data[start : stream.tell()])
    return streams


def describe_refusal(data: bytes, detail: str) -> str | None:
    """Why torch's weights-only unpickler refused a ``torch.save`` file, as a phrase that says it
    is unsafe (``"a pickle that imports 'posix.system'"``), or None when the bytes are not a
    complete pickle (a truncated or corrupt file, not an unsafe one). ``detail`` is torch's
    message, quoted when the opcodes name nothing outside torch's allow-list."""
    try:
        streams = _pickles_in(data)
        imports = [name for s in streams for name in pickle_imports(s)]
    except (ValueError, zipfile.BadZipFile, OSError, EOFError):
        return None
    if not streams:
        return None
    allowed = _allowed_globals()
    foreign = [n for n in imports if n not in allowed and not n.startswith("torch.")]
    if foreign:
        return "a pickle that imports " + ", ".join(repr(n) for n in foreign[:5])
    return f"a pickle using instructions outside torch's weights-only subset ({detail})"


def unpickling_detail(err: BaseException) -> str:
    """The line of a weights-only ``UnpicklingError`` that says what was refused."""
    lines = [x.strip() for x in str(err).splitlines() if x.strip()]
    detail = next((x for x in lines if "Unsupported" in x), lines[-1] if lines else "")
    return detail.removeprefix("WeightsUnpickler error: ").split(" was not an allowed")[0]


def _dry_run(data: bytes, entry: str, label: str) -> None:
    """Refuse ``entry`` unless torch's weights-only unpickler reads it (it runs nothing else)."""
    import torch

    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        why = describe_refusal(data, unpickling_detail(err))
        if why is None:
            raise ValueError(f"exported model {label!r} is truncated or corrupt: entry {entry!r} "
                             "is not a readable pickle") from None
        raise ValueError(f"refusing to load {label}: it is unsafe: entry {entry!r} is {why}, "
                         "which torch would unpickle with weights_only=False (running code "
                         f"from the file); {_EXPORTS}") from None
    except Exception as err:  # noqa: BLE001 - zip and storage errors of a damaged entry
        raise ValueError(f"exported model {label!r} is truncated or corrupt: entry {entry!r} "
                         f"cannot be read ({type(err).__name__})") from None


def _sympy_names() -> frozenset[str]:
    """Functions a symbolic expression may call: sympy's and torch's shape functions."""
    import sympy
    import torch.utils._sympy.functions as functions

    abstract = {"Application", "Expr", "LatticeOp", "MinMaxBase"}
    torch_names = {name for name, obj in vars(functions).items()
                   if isinstance(obj, type) and issubclass(obj, sympy.Basic)
                   and name not in abstract}  # fmt: skip
    return _SYMPY_NAMES | torch_names


def expression_problem(text: str, names: frozenset[str]) -> str | None:
    """What in ``text`` ``sympy.sympify`` could turn into code or into endless work (None: only
    sympy classes called on numbers, symbol names and other such calls, with arithmetic and
    comparisons; integers below :data:`MAX_INTEGER`, powers only to small constant exponents,
    at most :data:`MAX_EXPRESSION_CHARS` characters)."""
    if len(text) > MAX_EXPRESSION_CHARS:
        return f"is {len(text)} characters long (more than {MAX_EXPRESSION_CHARS})"
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return "is not a Python expression"
    quoted = set()  # string constants in their only allowed places: Symbol/Float's first arg
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and (
                (node.func.id == "Symbol" and _IDENTIFIER.match(first.value))
                or (node.func.id == "Float" and _NUMBER.match(first.value))
            ):
                quoted.add(id(first))
    plain = (ast.Expression, ast.Load, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp,
             ast.operator, ast.unaryop, ast.cmpop, ast.boolop)  # fmt: skip
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in names):
                return f"calls {ast.unparse(node.func)!r}"
        elif isinstance(node, ast.Name):
            if node.id not in names:
                return f"names {node.id!r}"
        elif isinstance(node, ast.keyword):
            if node.arg is None or not isinstance(node.value, ast.Constant):
                return "passes computed keyword arguments"
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, str) and id(node) not in quoted:
                return f"holds the string {node.value[:40]!r}"
            if not isinstance(node.value, (str, int, float, bool)):
                return f"holds a {type(node.value).__name__} constant"
            if isinstance(node.value, int) and abs(node.value) > MAX_INTEGER:
                return f"holds an integer beyond {MAX_INTEGER} (no tensor has such a size)"
        elif not isinstance(node, plain):
            return f"contains {type(node).__name__} syntax"
        exponent = _exponent(node)
        if exponent is not None and not _small_constant(exponent):
            return (f"raises to the power {ast.unparse(exponent)[:40]!r} (only constant "
                    f"exponents up to {MAX_EXPONENT} are evaluated)")
    return None


def _exponent(node: ast.AST) -> ast.AST | None:
    """The exponent of a power (``a ** b``, ``Pow(a, b)``, torch's ``PowByNatural(a, b)``...)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        return node.right
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and "Pow" in node.func.id:
        return node.args[1] if len(node.args) > 1 else ast.Constant(None)
    return None


def _small_constant(node: ast.AST) -> bool:
    """An integer constant of at most :data:`MAX_EXPONENT` in size, maybe negated or wrapped
    in ``Integer(...)``."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _small_constant(node.operand)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "Integer" and len(node.args) == 1):  # fmt: skip
        return _small_constant(node.args[0])
    return (isinstance(node, ast.Constant) and isinstance(node.value, int)
            and not isinstance(node.value, bool) and abs(node.value) <= MAX_EXPONENT)


def _expressions(value: Any):
    """Every string under an ``expr_str`` key of a serialised program (the ones sympified)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, sub in item.items():
                if key == "expr_str" and isinstance(sub, str):
                    yield sub
                else:
                    stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)


def audit_pt2(source: io.BytesIO, label: str) -> None:
    """Refuse a ``.pt2`` archive from which torch's loader would run code (module docstring).

    The archive is read through torch's own ``PT2ArchiveReader``, payload configs through its
    own parser, so the bytes checked are the bytes torch will load.

    Args:
        source: the whole file in memory (load from the same buffer: checked is loaded).
        label: how to name the file in messages.

    Raises:
        ValueError: naming the entry and what in it is unsafe, or a corrupt archive.
    """
    from torch.export.pt2_archive import constants as c
    from torch.export.pt2_archive._package import PT2ArchiveReader, _load_payload_config

    names = _sympy_names()
    source.seek(0)
    try:
        reader = PT2ArchiveReader(source)
        files = reader.get_file_names()
    except Exception as err:  # noqa: BLE001 - torch's zip reader on a damaged archive
        raise ValueError(f"exported model {label!r} is truncated or corrupt ({type(err).__name__})"
                         ) from None
    present = set(files)
    prefix, suffix = c.MODELS_FILENAME_FORMAT.split("{}")
    for program_file in (f for f in files if f.startswith(c.MODELS_DIR)):
        model = program_file[len(prefix) : -len(suffix)]  # as torch's _load_exported_programs
        pickled = [c.SAMPLE_INPUTS_FILENAME_FORMAT.format(model)]
        for folder, config_format in ((c.WEIGHTS_DIR, c.WEIGHTS_CONFIG_FILENAME_FORMAT),
                                      (c.CONSTANTS_DIR, c.CONSTANTS_CONFIG_FILENAME_FORMAT)):
            pickled.append(f"{folder}{model}.pt")  # the legacy whole-file format
            config_file = config_format.format(model)
            if config_file not in present:
                continue
            try:
                config = _load_payload_config(reader, config_file)
            except Exception as err:  # noqa: BLE001 - malformed JSON or schema
                raise ValueError(f"exported model {label!r} is corrupt: {config_file!r} cannot be "
                                 f"parsed ({type(err).__name__})") from None
            for fqn, meta in config.config.items():
                entry = os.path.join(folder, meta.path_name)  # exactly as torch joins it
                if meta.path_name.startswith((c.CUSTOM_OBJ_FILENAME_PREFIX,
                                              c.OPAQUE_OBJ_FILENAME_PREFIX)):
                    raise ValueError(
                        f"refusing to load {label}: it is unsafe: constant {fqn!r} (entry "
                        f"{entry!r}) is a pickled Python object, which torch would unpickle "
                        f"without restriction; {_EXPORTS}")
                if meta.use_pickle:
                    pickled.append(entry)
        for entry in dict.fromkeys(pickled):
            if entry in present:
                _dry_run(reader.read_bytes(entry), entry, label)
        try:
            program = json.loads(reader.read_bytes(program_file))
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"exported model {label!r} is corrupt: {program_file!r} is not "
                             "JSON") from None
        for text in _expressions(program):
            problem = expression_problem(text, names)
            if problem is not None:
                raise ValueError(
                    f"refusing to load {label}: it is unsafe: the symbolic size expression "
                    f"{text[:80]!r} in {program_file!r} {problem}, and torch evaluates these "
                    f"with sympy.sympify (eval); {_EXPORTS}")


def check_program(program: Any, label: str) -> None:
    """Refuse a loaded ``ExportedProgram`` whose graph calls anything but ATen operators,
    ``operator``/``math`` arithmetic and ``torch.sym_*`` (what equivar exports hold): torch's
    deserialiser resolves any ``torch.``-prefixed name a file gives, ``torch.os.system``
    included, and its verifier is the file's own choice."""
    import torch

    symbolic = {torch.sym_int, torch.sym_float, torch.sym_max, torch.sym_min, torch.sym_not,
                torch.sym_sqrt, torch.sym_ite, torch.sym_sum}  # fmt: skip
    for module in program.graph_module.modules():
        if not isinstance(module, torch.fx.GraphModule):
            continue
        for node in module.graph.nodes:
            if node.op in ("placeholder", "output", "get_attr"):
                continue
            target = node.target
            fine = node.op == "call_function" and (
                isinstance(target, torch._ops.OpOverload)
                or target in symbolic
                or (getattr(target, "__module__", None) in ("_operator", "math")
                    and type(target).__name__ == "builtin_function_or_method"))  # fmt: skip
            if not fine:
                name = getattr(target, "__qualname__", None) or str(target)
                where = getattr(target, "__module__", None)
                called = f"{where}.{name}" if where else name
                raise ValueError(
                    f"refusing to load {label}: it is unsafe: graph node {node.name!r} "
                    f"({node.op}) calls {called!r}, not an ATen operator; {_EXPORTS}")
