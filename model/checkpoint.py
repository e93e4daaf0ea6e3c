"""Checkpoint import (needs the 'train' extra): a state dict saved by other code, mapped onto
CMamba-slim (`model.cmamba.CMambaSlim`). docs/import.md.

- `load_checkpoint(path)`: `.pt` / `.pth` / `.bin` / `.ckpt` through `torch.load(weights_only=True)`
  (a pickle of anything but tensors and plain containers is refused), `.safetensors` through the
  `safetensors` package. The tensors may sit at the top level or under one container key
  (`state_dict`, `model_state_dict`, `model`, `module`, `net`); a `quant` dict beside them (the
  model.json `quant` section, e.g. from a calibrated model) is kept.
- `normalize_state_dict(state_dict, target)`: maps every key onto the target's keys (wrapper
  prefixes such as `module.` / `_orig_mod.`, `layers.N.` / `layers.N.mixer.` / `blkN.` naming,
  aliases such as `conv1d` for `dwconv`; the Mamba-1 mixer's `x_proj`, `A_log`, `D` onto an S6
  block), reshapes only where singleton axes differ (`Linear [out, in]` vs `Conv1d [out, in, 1]`,
  the exported `dwconv [E, K]`), concatenates a split `in_proj_u` / `in_proj_z` into the fused
  `in_proj`, gives a block layer whose checkpoint has a weight but no bias in any block (`bias=False`,
  as Mamba's `in_proj`, `x_proj`, `out_proj`) a zero bias, and reports what it did: mapped (from -> to),
  reshaped, zero biases, unused, missing, mismatched.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from intsim.errors import CmambaError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
SAFETENSORS_QUANT_KEY = "cmamba_hls.quant"  # safetensors metadata entry holding the quant JSON
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
WRAPPER_PREFIXES = ("module", "_orig_mod", "model", "backbone", "net")  # DataParallel, compile, Lightning, ...
BLOCK_CONTAINERS = ("blocks", "layers", "block", "layer", "blk", "h")
TOP_ALIASES = {
    "patch_embed": ("patch_embed", "patch_embedding", "embed", "embedding", "stem"),
    "norm_f": ("norm_f", "final_norm", "norm_out", "ln_f", "norm"),
    "head": ("head", "lm_head", "out_head", "output_head"),
}
BLOCK_ALIASES = {
    "norm": ("norm", "ln", "rmsnorm"),
    "in_proj": ("in_proj",),
    "in_proj_u": ("in_proj_u", "in_proj_x"),
    "in_proj_z": ("in_proj_z",),
    "dwconv": ("dwconv", "conv1d", "conv"),
    "dt_proj": ("dt_proj",),
    "x_proj": ("x_proj",),
    "out_proj": ("out_proj",),
}
BLOCK_PARAMS = ("A_log", "D")  # parameters held by the block (Mamba: the mixer) itself, not by a layer
S6_ONLY = ("x_proj", "A_log", "D")  # what a Mamba-1 (S6) block has and a simple block lacks
NORM_GAIN_ALIASES = ("weight", "gamma", "g", "gain")
QUANT_KEY_RE = re.compile(
    r"(^|\.|_)(scale|zero_point|frac_bits|observer\w*|fake_quant\w*|activation_post_process"
    r"|min_val|max_val)(\.|$)"
)


class CheckpointError(CmambaError):
    """A checkpoint that cannot be read, or whose weights do not fit the target model."""


@dataclass
class Checkpoint:
    tensors: dict[str, torch.Tensor]
    kind: str  # "torch" or "safetensors"
    container: str | None = None  # the key the tensors were found under
    ignored: list[str] = field(default_factory=list)  # other top-level entries, not tensors
    quant: dict | None = None


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _refusal(exc: BaseException) -> str:
    """The useful part of torch's weights_only refusal: 'Unsupported global x.Y' or its reason."""
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if m:
        return f"Unsupported global {m.group(1)}"
    m = re.search(r"WeightsUnpickler error: ([^\n]*?)(\.\s|\n|$)", str(exc))
    return m.group(1) if m else _first_line(exc)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read `path` (see the module docstring). CheckpointError names the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return _load_safetensors(path)
    if suffix not in CHECKPOINT_SUFFIXES:
        raise CheckpointError(
            f"{path}: unknown checkpoint type '{path.suffix}' (known: "
            f"{', '.join(CHECKPOINT_SUFFIXES + (SAFETENSORS_SUFFIX,))})"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused by torch.load(weights_only=True): {_refusal(exc)}; the file "
            f"pickles Python objects besides tensors: re-save the state dict "
            f"(torch.save(model.state_dict(), ...)) or convert it to .safetensors"
        ) from exc
    except Exception as exc:  # truncated zip, not a torch file, ...: torch raises many kinds
        raise CheckpointError(
            f"{path}: cannot read the checkpoint (truncated or not a torch file?): {_first_line(exc)}"
        ) from exc
    return _find_tensors(path, obj, "torch")


def _load_safetensors(path: Path) -> Checkpoint:
    try:
        from safetensors import SafetensorError, safe_open
    except ModuleNotFoundError as exc:
        raise CheckpointError(
            f"{path}: reading .safetensors needs the 'safetensors' package "
            f"(part of the 'train' extra: pip install -e '.[train]')"
        ) from exc
    try:
        with safe_open(str(path), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: cannot read the safetensors file (truncated or corrupt?): {_first_line(exc)}"
        ) from exc
    quant = None
    if SAFETENSORS_QUANT_KEY in meta:
        try:
            quant = json.loads(meta[SAFETENSORS_QUANT_KEY])
        except ValueError as exc:
            raise CheckpointError(f"{path}: metadata '{SAFETENSORS_QUANT_KEY}' is not JSON ({exc})") from exc
    ck = _find_tensors(path, tensors, "safetensors")
    ck.quant = quant
    return ck


def _tensor_entries(obj: Mapping) -> dict:
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _find_tensors(path: Path, obj, kind: str) -> Checkpoint:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a dict of tensors (a state dict)")
    quant = obj.get("quant") if isinstance(obj.get("quant"), dict) else None
    top = _tensor_entries(obj)
    if top:
        ignored = [str(k) for k in obj if str(k) not in top and k != "quant"]
        return Checkpoint(top, kind, None, ignored, quant)
    for key in CONTAINER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and _tensor_entries(inner):
            tensors = _tensor_entries(inner)
            ignored = [str(k) for k in obj if k not in (key, "quant")]
            ignored += [f"{key}.{k}" for k in inner if str(k) not in tensors]
            return Checkpoint(tensors, kind, key, ignored, quant)
    raise CheckpointError(
        f"{path}: holds no tensors at the top level or under "
        f"{', '.join(repr(k) for k in CONTAINER_KEYS)} (top-level keys: "
        f"{', '.join(map(str, list(obj)[:8])) or 'none'})"
    )


# ----------------------------------------------------------------------------- key mapping
def _alias(table: dict, name: str) -> str | None:
    for canonical, names in table.items():
        if name in names:
            return canonical
    return None


def canonical_key(key: str) -> tuple[str, str | None] | None:
    """`key` in CMambaSlim's naming: (target key, part) where part is 'u' / 'z' for the halves of
    a split in_proj, else None. None when the key names nothing CMamba-slim has."""
    parts = key.split(".")
    while len(parts) > 2 and parts[0] in WRAPPER_PREFIXES:
        parts = parts[1:]
    m = re.fullmatch(r"([A-Za-z_]+?)_?(\d+)", parts[0])
    if m and m.group(1) in BLOCK_CONTAINERS:  # blk0.norm.weight
        parts = [m.group(1), m.group(2)] + parts[1:]
    *mods, param = parts
    if len(mods) >= 2 and mods[0] in BLOCK_CONTAINERS and mods[1].isdigit():
        rest = mods[2:]
        if rest[:1] == ["mixer"]:
            rest = rest[1:]
        prefix = f"blocks.{int(mods[1])}."
        if not rest:  # layers.N.mixer.A_log
            return (f"{prefix}{param}", None) if param in BLOCK_PARAMS else None
        name = _alias(BLOCK_ALIASES, rest[0]) if len(rest) == 1 else None
    elif len(mods) == 1:
        name = _alias(TOP_ALIASES, mods[0])
        prefix = ""
    else:
        return None
    if name is None:
        return None
    if name in ("norm", "norm_f"):
        param = "weight" if param in NORM_GAIN_ALIASES else None
    if param not in ("weight", "bias"):
        return None
    if name in ("in_proj_u", "in_proj_z"):
        return f"{prefix}in_proj.{param}", name[-1]
    return f"{prefix}{name}.{param}", None


def _fmt(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _squeezed(shape) -> list[int]:
    return [int(s) for s in shape if s != 1]


@dataclass
class Normalized:
    """normalize_state_dict's result: the target-named state dict and what was done to get it."""

    state_dict: dict[str, torch.Tensor]
    mapped: list[tuple[str, str]] = field(default_factory=list)  # (from, to)
    reshaped: list[tuple[str, str, str]] = field(default_factory=list)  # (key, from shape, to shape)
    merged: list[tuple[str, str, str]] = field(default_factory=list)  # (u key, z key, fused key)
    zero_bias: list[str] = field(default_factory=list)  # target biases set to 0: the checkpoint's layer has none
    unused: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # shape mismatch, conflicts, bad values

    hint: str | None = None  # why the errors are likely, first among them

    def errors(self, strict: bool = False) -> list[str]:
        out = list(self.problems)
        if self.missing:
            out.append(f"{len(self.missing)} required weight(s) missing: {', '.join(self.missing)}")
        if strict and self.unused:
            out.append(f"--strict: {len(self.unused)} unused key(s): {', '.join(self.unused)}")
        return [self.hint] + out if out and self.hint else out

    def report_lines(self) -> list[str]:
        lines = [f"mapped ({len(self.mapped)}, from -> to):"]
        lines += [f"  {a} -> {b}" if a != b else f"  {a}" for a, b in self.mapped]
        for title, rows in (
            ("reshaped", [f"  {k}: {a} -> {b}" for k, a, b in self.reshaped]),
            ("concatenated", [f"  {u} + {z} -> {to}" for u, z, to in self.merged]),
            ("zero bias (the checkpoint's layer has no bias)", [f"  {k}" for k in self.zero_bias]),
            (
                "unused",
                [
                    f"  {k}" + ("  (quantization parameter: not read)" if QUANT_KEY_RE.search(k) else "")
                    for k in self.unused
                ],
            ),
            ("missing", [f"  {k}" for k in self.missing]),
        ):
            lines.append(f"{title} ({len(rows)}):" + ("" if rows else " none"))
            lines += rows
        return lines


def target_shapes(target: nn.Module | Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of `target`: an nn.Module (its state dict) or a mapping key -> shape."""
    if isinstance(target, torch.nn.Module):
        return {k: tuple(v.shape) for k, v in target.state_dict().items()}
    return {str(k): tuple(int(s) for s in v) for k, v in dict(target).items()}


def normalize_state_dict(
    state_dict: Mapping[str, torch.Tensor], target: nn.Module | Mapping[str, Sequence[int]]
) -> Normalized:
    """Map `state_dict` onto `target`'s keys and shapes (see the module docstring). Never raises
    for a mismatch: the result lists problems, missing and unused keys (`Normalized.errors`)."""
    want = target_shapes(target)
    res = Normalized({})
    sources: dict[str, dict[str | None, str]] = {}  # target key -> part -> source key
    for key in state_dict:
        canon = canonical_key(str(key))
        if canon is None or canon[0] not in want:
            res.unused.append(str(key))
            continue
        to, part = canon
        have = sources.setdefault(to, {})
        if part in have or (part is None and have) or (part is not None and None in have):
            other = next(iter(have.values()))
            res.problems.append(f"{other} and {key} both map to {to}")
            continue
        have[part] = str(key)
    biased = {_layer_kind(k) for k in sources if k.endswith(".bias")}
    for to, shape in want.items():
        have = sources.get(to)
        if (
            not have
            and to.startswith("blocks.")
            and to.endswith(".bias")
            and _layer_kind(to) not in biased
            and sources.get(to[: -len("bias")] + "weight")
        ):
            res.state_dict[to] = torch.zeros(shape)  # Mamba's bias=False layers: no block has a bias
            res.zero_bias.append(to)
            continue
        if not have:
            res.missing.append(to)
            continue
        if None in have:
            src = have[None]
            value = _fit(res, src, state_dict[src], shape, to)
            res.mapped.append((src, to))
        else:
            if set(have) != {"u", "z"}:
                lost = "in_proj_z" if "u" in have else "in_proj_u"
                res.missing.append(f"{to} (the {lost} half; found only {next(iter(have.values()))})")
                continue
            half = (shape[0] // 2,) + tuple(shape[1:])
            u = _fit(res, have["u"], state_dict[have["u"]], half, to + " (first half)")
            z = _fit(res, have["z"], state_dict[have["z"]], half, to + " (second half)")
            value = torch.cat([u, z]) if u is not None and z is not None else None
            res.mapped += [(have["u"], to + "[:half]"), (have["z"], to + "[half:]")]
            res.merged.append((have["u"], have["z"], to))
        if value is not None:
            res.state_dict[to] = value
    s6_keys = [k for k in res.unused if (c := canonical_key(k)) and _layer_kind(c[0]) in S6_ONLY]
    if s6_keys and not any(k.endswith(".A_log") for k in want):
        res.hint = (
            f"the checkpoint holds Mamba-1 (S6) weights ({', '.join(s6_keys[:3])}"
            f"{', ...' if len(s6_keys) > 3 else ''}) but the target has simple blocks: import it with "
            f"--config '{{\"block\": \"s6\", \"d_state\": N, \"dt_rank\": R, ...}}'"
        )
    return res


def _layer_kind(key: str) -> str:
    """'blocks.3.x_proj.bias' -> 'x_proj' (the layer or parameter within any block); other keys: themselves."""
    parts = key.split(".")
    return parts[2] if len(parts) > 2 and parts[0] == "blocks" else key


def _fit(res: Normalized, src: str, tensor, shape: tuple, to: str):
    """`tensor` as float32 of `shape` (singleton axes may differ), or None with a problem noted."""
    if not isinstance(tensor, torch.Tensor):
        res.problems.append(f"{src} is a {type(tensor).__name__}, not a tensor")
        return None
    if not tensor.is_floating_point():
        res.problems.append(
            f"{src} has dtype {str(tensor.dtype).replace('torch.', '')}; expected floating-point "
            f"weights (an integer-quantized checkpoint is not a float model)"
        )
        return None
    if tuple(tensor.shape) != tuple(shape):
        if tensor.numel() != int(torch.Size(shape).numel()) or _squeezed(tensor.shape) != _squeezed(shape):
            res.problems.append(f"shape mismatch: {src} is {_fmt(tensor.shape)}, {to} needs {_fmt(shape)}")
            return None
        res.reshaped.append((src, _fmt(tensor.shape), _fmt(shape)))
        tensor = tensor.reshape(shape)
    tensor = tensor.detach().to(torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        res.problems.append(f"{src} contains NaN/Inf")
        return None
    return tensor
