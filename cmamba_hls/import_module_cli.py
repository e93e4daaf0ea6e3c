"""`cmamba-hls import-module PY_FILE:FACTORY --out DIR`: trace a PyTorch module with torch.fx
and write it as a model directory (model/frontend.py, docs/import.md).

FACTORY is a function in PY_FILE called with no arguments; it returns the module (weights
loaded) or `(module, example_input)` with example_input a float tensor [B, C_in, L]. Without an
example input, --input-shape C,L gives one (random normal values, seed 0). Imports torch only
inside `run()`, so `cmamba-hls --help` works without the 'train' extra.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
from pathlib import Path

from cmamba_hls.import_cli import command_line, like_model, print_written, require_torch
from intsim.errors import CmambaError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "factory",
        metavar="PY_FILE:FACTORY",
        help="a Python file and the function in it that returns the module, or (module, example input [B, C_in, L])",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="model directory to write (model.json + weights/)")
    p.add_argument(
        "--input-shape", metavar="C,L", help="input channels and length, when FACTORY returns no example input"
    )
    p.add_argument(
        "--like",
        metavar="MODEL_DIR",
        help="copy column names and normalisation from this model directory (default: identity "
        "normalisation, unnamed channels)",
    )
    p.add_argument("--name", help="model name stored in model.json (default: the module's class name)")


def _input_shape(text: str) -> tuple[int, int]:
    try:
        c, length = (int(v) for v in text.split(","))
    except ValueError:
        raise CmambaError(f"--input-shape must be C,L (two positive integers), got {text!r}") from None
    if c <= 0 or length <= 0:
        raise CmambaError(f"--input-shape must be C,L (two positive integers), got {text!r}")
    return c, length


def load_factory(spec: str) -> object:
    """Import PY_FILE and call FACTORY(); returns its result. CmambaError names file and function."""
    file, sep, name = spec.rpartition(":")
    if not sep or not file or not name.isidentifier():
        raise CmambaError(f"expected PY_FILE:FACTORY (e.g. my_model.py:build), got {spec!r}")
    path = Path(file)
    if not path.is_file():
        raise CmambaError(f"{path}: file not found")
    mod_name = "cmamba_hls_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    loader_spec = importlib.util.spec_from_file_location(mod_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise CmambaError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[mod_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any exception, reported in one line
        sys.modules.pop(mod_name, None)
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) else ""
        raise CmambaError(f"{path}: importing it failed{where}: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(folder)
    factory = getattr(module, name, None)
    if not callable(factory):
        raise CmambaError(f"{path}: defines no function '{name}'")
    try:
        return factory()
    except Exception as exc:
        raise CmambaError(f"{path}:{name}() raised {type(exc).__name__}: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    require_torch("import-module")
    import torch

    from model.export import check_output_dir
    from model.frontend import check_against_module, from_module

    out = check_output_dir(args.out)  # fail before any work
    shape = _input_shape(args.input_shape) if args.input_shape else None
    meta = like_model(args.like) if args.like else {}
    made = load_factory(args.factory)
    module, example = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
    if not isinstance(module, torch.nn.Module):
        raise CmambaError(
            f"{args.factory}: returned {type(module).__name__}, not a torch.nn.Module "
            f"(or a (module, example_input) pair)"
        )
    if shape is not None:
        example = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    if example is None:
        raise CmambaError(f"{args.factory}: returned no example input: pass --input-shape C,L")
    record = {
        "command": command_line("import-module", args.factory, args, ("out", "input_shape", "like", "name")),
        "imported": {"module": args.factory, "class": type(module).__name__},
    }
    from_module(
        module,
        example,
        out,
        name=args.name or type(module).__name__,
        normalization=meta.get("normalization"),
        columns=meta.get("columns"),
        output_columns=meta.get("output_columns"),
        training_info=record,
    )
    diff = check_against_module(out, module, example)
    print(
        f"traced {type(module).__name__} ({args.factory}) with torch.fx; fp32 reference vs the module on the "
        f"example input {list(example.shape)}: max |diff| {diff:.3g}"
    )
    print_written(out, f"from {type(module).__name__}", table=True)
    return 0
