"""`cmamba-hls import CKPT (--config JSON | --like MODEL_DIR) --out DIR`: a checkpoint saved by
other code -> a CMamba-slim model directory (docs/import.md).

The checkpoint's keys are mapped by `model.checkpoint.normalize_state_dict` onto the
architecture that --config describes (`"block": "s6"` for Mamba-1 checkpoints) or that --like's
model has; the report (mapped,
reshaped, concatenated, unused, missing) is printed; missing or mismatched weights, and with
--strict unused keys, are errors, reported before anything is written. Imports torch only
inside `run()`, so `cmamba-hls --help` works without the 'train' extra.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
from pathlib import Path

from intsim.errors import CmambaError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint",
        metavar="CKPT",
        help=".pt / .pth / .bin / .ckpt (read with torch.load(weights_only=True)) or .safetensors",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--config",
        metavar="JSON",
        help="the architecture: a JSON file (or an inline JSON object) with CMamba-slim's sizes "
        "c_in, c_out, length, patch, stride, d_model, d_inner, n_blocks, d_conv, horizon, eps "
        "(absent ones: the shipped model's), block (simple | s6: Mamba-1, e.g. a checkpoint with "
        "layers.N.mixer.{in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj}) with d_state, "
        "dt_rank, optionally name, columns, output_columns, normalization",
    )
    src.add_argument(
        "--like",
        metavar="MODEL_DIR",
        help="take the architecture, column names and normalisation from this model directory",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="model directory to write (model.json + weights/)")
    p.add_argument("--strict", action="store_true", help="unused checkpoint keys are errors (default: listed)")
    p.add_argument(
        "--name", help="model name stored in model.json (default: --config's name, else the checkpoint's file name)"
    )


def require_torch(what: str) -> None:
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        raise CmambaError(f"{what} needs the 'train' extra (torch): pip install -e '.[train]'") from exc


def like_model(model_dir: str | Path) -> dict:
    """Column names and normalisation of an existing model directory, as keyword arguments of
    model.export.model_header / export_model (the name is not taken: the new model is another)."""
    from intsim.graph import load_graph

    graph = load_graph(model_dir)
    named_in = bool((graph.raw.get("input") or {}).get("columns"))
    named_out = bool((graph.raw.get("output") or {}).get("columns"))
    return {
        "normalization": {
            "input": {"mean": graph.norm_in_mean.tolist(), "std": graph.norm_in_std.tolist()},
            "output": {"mean": graph.norm_out_mean.tolist(), "std": graph.norm_out_std.tolist()},
        },
        "columns": list(graph.input_columns) if named_in else None,
        "output_columns": list(graph.output_columns) if named_out else None,
    }


def command_line(command: str, positional: str, args: argparse.Namespace, options: tuple[str, ...]) -> str:
    """The equivalent command line, recorded in model.json's training.command."""
    parts = ["cmamba-hls", command, positional]
    for key in options:
        value = getattr(args, key, None)
        if value is True:
            parts.append(f"--{key.replace('_', '-')}")
        elif value not in (None, False):
            parts += [f"--{key.replace('_', '-')}", str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def print_written(out: Path, what: str, table: bool = False) -> None:
    """What was written (with `table`, the layer table) and what to run next."""
    from cmamba_hls.info_cli import layer_lines
    from intsim.graph import load_graph

    graph = load_graph(out)
    if table:
        print("\n".join(layer_lines(graph)))
    print(f"wrote {out}: {what}, {len(graph.layers)} layers, {graph.n_weights():,} weights")
    lacking = [p.upper() for p in ("int16", "int8") if p not in graph.quant]
    if lacking:
        print(
            f"no {' / '.join(lacking)} quantization parameters: run `cmamba-hls calibrate {out} --data CSV` "
            f"before eval --mode bittrue|quant8 or codegen"
        )


def _read_config(text: str) -> dict:
    if text.lstrip().startswith("{"):
        where, body = "--config", text
    else:
        where = text
        try:
            body = Path(text).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CmambaError(
                f"{text}: cannot read the --config file ({getattr(exc, 'strerror', None) or exc})"
            ) from exc
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise CmambaError(f"{where}: malformed JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise CmambaError(f"{where}: must be a JSON object")
    return raw


def config_target(text: str) -> tuple[object, dict]:
    """(CMambaSlim, export keyword arguments) from --config."""
    from model.cmamba import BLOCKS, DEFAULTS, CMambaSlim

    raw = _read_config(text)
    where = "--config" if text.lstrip().startswith("{") else text
    extra = ("name", "columns", "output_columns", "normalization")
    unknown = sorted(set(raw) - set(DEFAULTS) - set(extra))
    if unknown:
        known = ", ".join(list(DEFAULTS) + list(extra))
        raise CmambaError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {known})")
    arch = {}
    for key, default in DEFAULTS.items():
        value = raw.get(key, default)
        if key == "eps":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1:
                raise CmambaError(f"{where}: eps must be a number in (0, 1], got {value!r}")
            value = float(value)
        elif key == "block":
            if value not in BLOCKS:
                raise CmambaError(f"{where}: block must be one of {', '.join(BLOCKS)}, got {value!r}")
        elif key == "dt_rank" and value is None:  # S6 default: ceil(d_model / 16)
            pass
        elif key == "channel_independent":  # every channel a series through the same weights
            if not isinstance(value, bool):
                raise CmambaError(f"{where}: channel_independent must be true or false, got {value!r}")
        elif not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise CmambaError(f"{where}: {key} must be a positive integer, got {value!r}")
        arch[key] = value
    try:
        module = CMambaSlim(**arch)
    except ValueError as exc:
        raise CmambaError(f"{where}: {exc}") from exc
    return module, {k: raw.get(k) for k in extra}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(args: argparse.Namespace) -> int:
    require_torch("import")
    from model.checkpoint import CheckpointError, load_checkpoint, normalize_state_dict
    from model.export import check_output_dir, export_model
    from model.load import load_torch_model

    ckpt = Path(args.checkpoint)
    out = check_output_dir(args.out)  # fail before any work
    if args.like:
        module, meta = load_torch_model(args.like), like_model(args.like)
        source = f"like {args.like}"
    else:
        module, meta = config_target(args.config)
        source = "--config"
    loaded = load_checkpoint(ckpt)
    norm = normalize_state_dict(loaded.tensors, module)

    print(
        f"checkpoint {ckpt} ({loaded.kind}, {len(loaded.tensors)} tensors"
        + (f" under '{loaded.container}'" if loaded.container else "")
        + ")"
        + (f"; other entries not read: {', '.join(loaded.ignored)}" if loaded.ignored else "")
    )
    print(f"target: CMamba-slim ({source}): " + ", ".join(f"{k}={v}" for k, v in module.hyper.items()))
    print("\n".join(norm.report_lines()))
    errors = norm.errors(args.strict)
    if errors:
        for line in errors[1:]:
            print(f"error: {line}")
        more = f" (and {len(errors) - 1} more, listed above)" if len(errors) > 1 else ""
        raise CheckpointError(f"{ckpt}: {errors[0]}{more}; nothing written")

    module.load_state_dict(norm.state_dict, strict=True)
    quant = loaded.quant

    def check(tmp: Path) -> None:
        if not quant:
            return
        from intsim.executor import load_model

        try:
            model = load_model(tmp)
            if "int16" in quant:
                _ = model.program
            if "int8" in quant:
                _ = model.program8
        except CmambaError as exc:
            raise CheckpointError(
                f"{ckpt}: its quantization parameters ('quant') do not fit the model: "
                f"{str(exc).replace(str(tmp), str(out))}"
            ) from exc

    record = {
        "command": command_line("import", str(ckpt), args, ("config", "like", "out", "strict", "name")),
        "imported": {
            "checkpoint": ckpt.name,
            "sha256": _sha256(ckpt),
            "kind": loaded.kind,
            "mapped": len(norm.mapped),
            "reshaped": len(norm.reshaped),
            "concatenated": len(norm.merged),
            "unused": norm.unused,
        },
    }
    name = args.name or meta.get("name") or ckpt.stem
    export_model(
        module,
        out,
        meta.get("normalization"),
        meta.get("columns"),
        record,
        name=name,
        output_columns=meta.get("output_columns"),
        check=check,
        quant=quant,
    )
    if quant:
        kept = ", ".join(k for k in ("int16", "int8") if k in quant) or "stats only"
        print(f"quant: kept from the checkpoint ({kept})")
    print_written(out, f"imported from {ckpt.name}")
    return 0
