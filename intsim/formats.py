"""Calibrated number formats as typed objects, validated once (docs/model-format.md `quant`).

`parse_quant(quant, graph_name, where)` reads model.json's `quant` object into
`QuantFormats`: INT16 fractional bits per tensor and weight (`Int16Formats`), INT8 scale and
zero point per tensor plus the RMSNorm mode (`Int8Params`). The graph parses it when it loads
and again whenever its `quant` is replaced (`Graph.quant = ...`, `Model.invalidate()`).
A missing or invalid part is kept as its QuantizationError and raised where that precision is
used (fp32 needs neither; bittrue before `calibrate` names the command to run).

Derived facts live here and nowhere else: the bias format f_x + f_w (`bias_frac`), the
`Q{16-f}.{f}` name (`q_name`), one LSB (`lsb`), the INT8 representable range (`QParams.range`).
Everything else (lowering, info, eval, calibrate tables, codegen) reads these fields, never
the raw dict by key path. Saving back to model.json serialises the raw dict (graph.save_quant).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from intsim.errors import QuantizationError

if TYPE_CHECKING:
    from pathlib import Path

    from intsim.graph import Layer

FRAC_MIN, FRAC_MAX = 0, 15
RMSNORM_MODES = ("v2", "v1")  # INT8 RMSNorm: V2 integer, V1 float inside (spec 3.9)
INT8_MIN, INT8_MAX = -128, 127


def q_name(frac_bits: int) -> str:
    """The INT16 format name of `frac_bits` fractional bits: Q8.8, Q1.15, ..."""
    return f"Q{16 - frac_bits}.{frac_bits}"


def lsb(frac_bits: int) -> float:
    """One INT16 LSB, 2**-frac_bits."""
    return 2.0**-frac_bits


@dataclass(frozen=True)
class Int16Formats:
    """quant.int16: fractional bits of every tensor and of every weight/gain (spec 2, 4.2)."""

    tensors: Mapping[str, int]  # tensor name -> f
    weights: Mapping[str, int]  # "<layer>.<weight key>" -> f (biases follow: bias_frac)
    method: str | None = None
    formats: str | None = None  # "q88" | "auto"
    n_samples: int | None = None

    def frac(self, tensor: str) -> int:
        if tensor not in self.tensors:
            raise QuantizationError(f"quant.int16: no frac_bits for tensor '{tensor}' (re-run calibrate)")
        return self.tensors[tensor]

    def weight_frac(self, layer_name: str, key: str = "weight") -> int:
        name = f"{layer_name}.{key}"
        if name not in self.weights:
            raise QuantizationError(f"quant.int16: no frac_bits for weight '{name}' (re-run calibrate)")
        return self.weights[name]

    def bias_frac(self, layer: Layer) -> int:
        """A bias is int32 at the accumulator format f_x + f_w (spec 2)."""
        return self.frac(layer.inputs[0]) + self.weight_frac(layer.name)


@dataclass(frozen=True)
class QParams:
    """INT8 asymmetric per-tensor parameters: x = scale * (q - zero_point) (spec 3.1)."""

    scale: float
    zero_point: int

    @property
    def range(self) -> tuple[float, float]:
        """The real values of the int8 codes -128 and 127."""
        return self.scale * (INT8_MIN - self.zero_point), self.scale * (INT8_MAX - self.zero_point)

    def __iter__(self):  # (scale, zero_point) unpacking
        return iter((self.scale, self.zero_point))


@dataclass(frozen=True)
class Int8Params:
    """quant.int8: (scale, zero point) of every tensor and the RMSNorm mode (spec 3)."""

    tensors: Mapping[str, QParams]
    rmsnorm: str = "v2"
    method: str | None = None

    def qp(self, tensor: str) -> QParams:
        if tensor not in self.tensors:
            raise QuantizationError(f"quant.int8: no scale/zero_point for tensor '{tensor}' (re-run calibrate)")
        return self.tensors[tensor]


@dataclass(frozen=True)
class QuantFormats:
    """Both precisions' parameters, or the error that says why one is unusable."""

    _int16: Int16Formats | QuantizationError
    _int8: Int8Params | QuantizationError
    n_samples: int | None = None  # calibration windows (quant.stats.n_samples)
    stats: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # tensor -> calibration stats

    @property
    def int16(self) -> Int16Formats:
        if isinstance(self._int16, QuantizationError):
            raise self._int16
        return self._int16

    @property
    def int8(self) -> Int8Params:
        if isinstance(self._int8, QuantizationError):
            raise self._int8
        return self._int8

    @property
    def int16_or_none(self) -> Int16Formats | None:
        return None if isinstance(self._int16, QuantizationError) else self._int16

    @property
    def int8_or_none(self) -> Int8Params | None:
        return None if isinstance(self._int8, QuantizationError) else self._int8


def _frac_bits(table: dict, key: str, what: str) -> int:
    entry = table.get(key)
    if not isinstance(entry, dict) or "frac_bits" not in entry:
        raise QuantizationError(f"quant.int16: no frac_bits for {what} '{key}' (re-run calibrate)")
    f = entry["frac_bits"]
    if not isinstance(f, int) or isinstance(f, bool) or not FRAC_MIN <= f <= FRAC_MAX:
        raise QuantizationError(f"quant.int16: frac_bits of {what} '{key}' must be an int in [0, 15], got {f!r}")
    return f


def _qparams(tensors: dict, name: str) -> QParams:
    entry = tensors.get(name)
    if not isinstance(entry, dict) or "scale" not in entry or "zero_point" not in entry:
        raise QuantizationError(f"quant.int8: no scale/zero_point for tensor '{name}' (re-run calibrate)")
    scale, zp = float(entry["scale"]), entry["zero_point"]
    if not (np.isfinite(scale) and scale > 0) or not isinstance(zp, int) or not INT8_MIN <= zp <= INT8_MAX:
        raise QuantizationError(f"quant.int8: tensor '{name}' needs scale > 0 and an int zero_point in [-128, 127]")
    return QParams(scale, zp)


def _calibrate_hint(graph_name: str, where) -> str:
    return f"run `cmamba-hls calibrate {where or 'MODEL_DIR'}` first"


def parse_int16(q: object, graph_name: str, where: str | Path | None = None) -> Int16Formats:
    if not isinstance(q, dict) or not isinstance(q.get("tensors"), dict) or not isinstance(q.get("weights"), dict):
        raise QuantizationError(
            f"model '{graph_name}' has no INT16 formats (quant.int16): {_calibrate_hint(graph_name, where)}"
        )
    tensors = {name: _frac_bits(q["tensors"], name, "tensor") for name in q["tensors"]}
    weights = {name: _frac_bits(q["weights"], name, "weight") for name in q["weights"]}
    return Int16Formats(
        MappingProxyType(tensors), MappingProxyType(weights), q.get("method"), q.get("formats"), q.get("n_samples")
    )


def parse_int8(q: object, graph_name: str, where: str | Path | None = None) -> Int8Params:
    if not isinstance(q, dict) or not isinstance(q.get("tensors"), dict):
        raise QuantizationError(
            f"model '{graph_name}' has no INT8 parameters (quant.int8): {_calibrate_hint(graph_name, where)}"
        )
    rms_mode = q.get("rmsnorm", "v2")
    if rms_mode not in RMSNORM_MODES:
        raise QuantizationError(f"quant.int8.rmsnorm must be one of {RMSNORM_MODES}, got {rms_mode!r}")
    tensors = {name: _qparams(q["tensors"], name) for name in q["tensors"]}
    return Int8Params(MappingProxyType(tensors), rms_mode, q.get("method"))


def parse_quant(quant: dict, graph_name: str, where: str | Path | None = None) -> QuantFormats:
    """Validate model.json's `quant` (see the module docstring); never raises."""
    parts = []
    for key, parse in (("int16", parse_int16), ("int8", parse_int8)):
        try:
            parts.append(parse(quant.get(key), graph_name, where))
        except QuantizationError as exc:
            parts.append(exc)
    stats = quant.get("stats") if isinstance(quant.get("stats"), dict) else {}
    tensors = stats.get("tensors") if isinstance(stats.get("tensors"), dict) else {}
    return QuantFormats(parts[0], parts[1], stats.get("n_samples"), MappingProxyType(tensors))
