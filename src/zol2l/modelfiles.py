"""Which kind of model file a ``--target`` is, and loading it without unpickling anything.

The trust model (README, "Your own target"):

* **TorchScript** files (``torch.jit.save``) are *programs*: loading one runs the TorchScript
  code stored in it.  Load only TorchScript files you trust.
* **torch.export** archives (``torch.export.save``, ``.pt2``) are loaded only when nothing in
  them is a pickle or Python code: every weight and constant must be stored as raw tensor
  bytes (``"use_pickle": false`` in the archive's configs), no member may be compiled code
  (AOTInductor) or an unknown payload, the sample inputs must load with
  ``torch.load(weights_only=True)``, every graph node must call a torch operator
  (``torch.ops.*``, or torch's symbolic-shape helpers), and every guard (``guards_code``,
  which ``ExportedProgram.module()`` turns into Python with ``exec``) must be a plain
  comparison of input sizes.  Anything else is refused *before* torch reads the
  archive, and the loading itself runs with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1``.
* Everything else (``torch.save`` pickles of a state dict or of a module, legacy non-zip
  files, torch.export files of torch < 2.8 whose weights are pickles) is refused.

The format is decided from the zip archive's member names, before any loader runs; zol2l never
tries one loader after another failed.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch

Format = Literal["torchscript", "export"]

_EXPORT_TOP = {"archive_format", "archive_version", "byteorder", "version",
               ".data/version", ".data/serialization_id"}
_HOW = ("save the model with torch.export.save(torch.export.export(model, (x,), "
        "dynamic_shapes=({0: torch.export.Dim('batch')},)), PATH) with plain tensor weights, "
        "or with torch.jit.save (a TorchScript program: trusted files only)")


class UnsafeModelFileError(ValueError):
    """A model file zol2l refuses to load, with the detected format and the reason."""


def _refuse(source: str, detected: str, why: str) -> UnsafeModelFileError:
    return UnsafeModelFileError(f"{source}: detected {detected}; refused because {why}; {_HOW}")


def _members(data: bytes, source: str) -> tuple[zipfile.ZipFile, str, list[str]]:
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise _refuse(source, "no zip archive (neither a TorchScript file nor a torch.export "
                      "archive; maybe a legacy torch.save pickle)",
                      "zol2l loads only zip-based TorchScript and torch.export files and never "
                      "unpickles model files")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = [i.filename for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise _refuse(source, "a damaged zip archive", f"it cannot be read ({e})") from None
    prefixes = {n.split("/", 1)[0] for n in names if "/" in n}
    if len(prefixes) != 1 or any("/" not in n for n in names):
        if "serialized_exported_program.json" in names:
            raise _refuse(source, "a torch.export file of the old format (torch < 2.8)",
                          "its weights and example inputs are pickles")
        raise _refuse(source, "a zip archive that is no torch file",
                      f"its members ({', '.join(sorted(names)[:4])}, ...) are not those of a "
                      "TorchScript or torch.export archive")
    prefix = prefixes.pop() + "/"
    return archive, prefix, [n[len(prefix):] for n in names]


def _config(archive: zipfile.ZipFile, name: str, source: str) -> dict[str, Any]:
    try:
        table = json.loads(archive.read(name))["config"]
        if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
            raise TypeError("'config' is not a table of entries")
        return table
    except (KeyError, ValueError, TypeError) as e:
        raise _refuse(source, "a torch.export archive", f"{name} is missing or unreadable "
                      f"({type(e).__name__}: {e})") from None


#: callables an exported graph may call besides ``torch.ops.*`` (torch's symbolic-shape ops)
_SYM_TARGETS = {f"torch.{n}" for n in ("sym_int", "sym_float", "sym_ite", "sym_max", "sym_min",
                                        "sym_not", "sym_sqrt", "_sym_sqrt", "sym_sum")}
#: operator namespaces of torch itself (not torch.ops.load_library, not user namespaces)
_NAMESPACES = {"aten", "prims", "higher_order", "quantized", "quantized_decomposed"}
_OPERATORS = {"add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs",
              "trunc", "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "xor", "not_",
              "invert", "lshift", "rshift", "getitem", "truth"}
#: what a guard (``guards_code``, Python that ``.module()`` executes) may name and access
_GUARD_NAMES = {"L", "inf", "IsNonOverlappingAndDenseIndicator",
                "cast_symbool_to_symint_guardless"}
_TENSOR_ATTRS = {"size", "stride", "storage_offset", "dim", "numel", "shape"}
_GUARD_NODES = (ast.Expression, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call,
                ast.Subscript, ast.Constant, ast.Name, ast.Attribute, ast.Tuple, ast.List,
                ast.Load, ast.boolop, ast.operator, ast.unaryop, ast.cmpop)


def _safe_target(target: str) -> bool:
    head, _, rest = target.partition(".")
    parts = rest.split(".")
    if target.startswith("torch.ops."):  # torch.ops.NAMESPACE.OP[.OVERLOAD], no helpers
        ops = parts[1:]
        return 2 <= len(ops) <= 3 and ops[0] in _NAMESPACES and all(
            p.isidentifier() and not p.startswith("__") for p in ops)
    if head == "_operator":
        return len(parts) == 1 and parts[0] in _OPERATORS
    if head == "math":
        return len(parts) == 1 and parts[0].isidentifier() and not parts[0].startswith("_")
    return target in _SYM_TARGETS


def _safe_attribute(node: ast.Attribute) -> bool:
    if isinstance(node.value, ast.Name) and node.value.id == "math":
        return not node.attr.startswith("_")
    if isinstance(node.value, ast.Name) and node.value.id == "torch":
        return f"torch.{node.attr}" in _SYM_TARGETS
    return node.attr in _TENSOR_ATTRS


def _safe_guard(code: str) -> bool:
    """Whether a guard is a plain shape comparison (no names, attributes or calls beyond
    tensor sizes and torch's symbolic-shape helpers)."""
    try:
        tree = ast.parse(code, mode="eval")
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if not isinstance(node, _GUARD_NODES):
            return False
        if isinstance(node, ast.Name) and node.id not in _GUARD_NAMES | {"math", "torch"}:
            return False
        if isinstance(node, ast.Attribute) and not _safe_attribute(node):
            return False
        if isinstance(node, ast.Name) and node.id in ("math", "torch"):
            continue  # only reachable as the base of a checked attribute
        if isinstance(node, ast.Call) and (node.keywords or not (
                isinstance(node.func, ast.Attribute) or (isinstance(node.func, ast.Name)
                                                         and node.func.id in _GUARD_NAMES))):
            return False
    return True


def _graph_targets(value: Any) -> Iterator[str]:
    """Every node target of a serialized graph, nested graphs included."""
    if isinstance(value, dict):
        if isinstance(value.get("target"), str) and "inputs" in value:
            yield value["target"]
        for sub in value.values():
            yield from _graph_targets(sub)
    elif isinstance(value, list):
        for sub in value:
            yield from _graph_targets(sub)


def _check_program(archive: zipfile.ZipFile, name: str, source: str) -> None:
    """Refuse an exported program that would run Python of the file's choosing: graph
    nodes calling anything but torch operators, or guards that are not shape checks."""
    what = "a torch.export archive (.pt2)"
    try:
        program = json.loads(archive.read(name))
        guards = program.get("guards_code") or []
        if not isinstance(guards, list):
            raise TypeError("guards_code is not a list")
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise _refuse(source, what, f"its program {name} is unreadable ({e})") from None
    for target in _graph_targets(program.get("graph_module")):
        if not _safe_target(target):
            raise _refuse(source, what, f"its graph calls {target!r}, which is not a torch "
                          "operator (an exported graph may call only torch.ops.*)")
    for guard in guards:
        if not isinstance(guard, str) or not _safe_guard(guard):
            raise _refuse(source, what, f"its guards_code holds {str(guard)[:80]!r}, which is "
                          "not a plain shape check (torch.export executes guards as Python)")


def _check_export(archive: zipfile.ZipFile, prefix: str, names: list[str], source: str) -> None:
    what = "a torch.export archive (.pt2)"
    models = [n[len("models/"):-len(".json")] for n in names
              if n.startswith("models/") and n.endswith(".json")]
    if not models:
        raise _refuse(source, what, "it holds no exported program (models/*.json)")
    allowed = set(_EXPORT_TOP) | {f"models/{m}.json" for m in models} | \
        {f"data/sample_inputs/{m}.pt" for m in models}
    for name in names:
        if name in allowed or name.startswith("extra/"):
            continue
        if name.startswith(("data/weights/", "data/constants/")):
            if any(name in (f"data/weights/{m}.pt", f"data/constants/{m}.pt") for m in models):
                raise _refuse(source, what, f"{name} stores the weights in the legacy pickled "
                              "format")
            continue
        raise _refuse(source, what, f"it contains {name}, which is compiled code or a payload "
                      "zol2l does not load")
    for model in models:
        _check_program(archive, f"{prefix}models/{model}.json", source)
        for kind in ("weights", "constants"):
            cfg = f"data/{kind}/{model}_{kind}_config.json"
            for fqn, entry in _config(archive, prefix + cfg, source).items():
                if entry.get("use_pickle") is not False:
                    raise _refuse(source, what, f"{kind[:-1]} {fqn!r} is stored as a pickle "
                                  f"(\"use_pickle\": true in {cfg}), and unpickling can run "
                                  "arbitrary code")
                path = str(entry.get("path_name", ""))
                if kind == "constants" and not path.startswith("tensor_"):
                    raise _refuse(source, what, f"constant {fqn!r} is a pickled Python or "
                                  f"script object ({path}), and unpickling can run code")
        sample = f"{prefix}data/sample_inputs/{model}.pt"
        if sample[len(prefix):] in names:
            try:
                torch.load(io.BytesIO(archive.read(sample)), weights_only=True)
            except Exception as e:  # torch's restricted unpickler raises various types
                raise _refuse(source, what, "its sample inputs are not plain tensors "
                              f"(torch.load(weights_only=True): {type(e).__name__})") from None


def detect_format(data: bytes, source: str) -> Format:
    """The format of the model file ``data`` (named ``source`` in messages); raises
    :class:`UnsafeModelFileError` for anything zol2l does not load, and for ``.pt2`` archives
    holding pickles."""
    archive, prefix, names = _members(data, source)
    if "archive_format" in names:
        fmt = archive.read(prefix + "archive_format").decode(errors="replace").strip()
        if fmt != "pt2":
            raise _refuse(source, f"a PT2 archive of format {fmt!r}", "only 'pt2' "
                          "(torch.export.save) archives are loaded")
        _check_export(archive, prefix, names, source)
        return "export"
    if "data.pkl" in names and ("constants.pkl" in names
                                or any(n.startswith("code/") for n in names)):
        return "torchscript"
    if "data.pkl" in names:
        raise _refuse(source, "a torch.save pickle archive (a state dict or a pickled module)",
                      "zol2l never unpickles model files")
    raise _refuse(source, "a zip archive that is no torch file",
                  "it has neither the members of a TorchScript file nor those of a "
                  "torch.export archive")


@contextmanager
def _weights_only() -> Iterator[None]:
    """Force ``torch.load(weights_only=True)`` inside the body, whatever the caller asks."""
    before = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = before


@contextmanager
def _quiet_torch_export() -> Iterator[None]:
    """Silence torch.export's logged tracebacks (zol2l reports the error on one line)."""
    loggers = [logging.getLogger(name) for name in ("torch.export", "torch._export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


def load_model_bytes(data: bytes, source: str) -> tuple[Format, Any]:
    """``(format, module)`` of a checked model file: a TorchScript module in eval mode, or the
    ``ExportedProgram`` of a torch.export archive (call ``.module()`` on it)."""
    fmt = detect_format(data, source)
    try:
        if fmt == "torchscript":
            with warnings.catch_warnings():  # torch 2.9+ deprecates TorchScript loudly
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(io.BytesIO(data), map_location="cpu")
            module.eval()
            return fmt, module
        with _weights_only(), _quiet_torch_export():
            return fmt, torch.export.load(io.BytesIO(data))
    except Exception as e:  # the loaders raise many types; the format is already known
        kind = "TorchScript file" if fmt == "torchscript" else "torch.export archive"
        raise ValueError(f"{source}: detected a {kind}, but torch cannot load it "
                         f"({first_line(e)})") from e
