"""The run modes, in one ordered list (docs/quant-spec.md; README "Modes").

`Model.run`, evaluation, the reports, the demo and the command line all take their modes
from `MODES` (that order is the report order) and ask a `Mode` what it is, never repeat
lists of mode names.
"""

from __future__ import annotations

from dataclasses import dataclass

from intsim.errors import UnsupportedError


@dataclass(frozen=True)
class Mode:
    name: str
    integer: bool  # integer arithmetic (an int output and a C++ back end of its own)
    precision: str | None  # whose calibrated formats it uses: "int16" | "int8" | None (float)
    description: str
    lsb: str  # what one output LSB is ("" for float)
    saturations: str  # what its saturation counts mean

    @property
    def hls_precision(self) -> str | None:
        """The C++ back end (`codegen --precision`) that is bit-exact with this mode, if any."""
        return self.precision if self.integer else None


FP32 = Mode("fp32", False, None, "float reference (numpy float64)", "", "none (float)")
QUANT16 = Mode(
    "quant16",
    False,
    "int16",
    "fake quantization: weights, biases and every activation snapped to their INT16 formats, arithmetic in float",
    "2**-f of the output tensor's INT16 format",
    "values clamped when snapped to their INT16 format",
)
BITTRUE = Mode(
    "bittrue",
    True,
    "int16",
    "the INT16 golden model: pure integer kernels (spec section 2)",
    "2**-f of the output tensor's INT16 format",
    "int16 clamp events inside the integer kernels",
)
QUANT8 = Mode(
    "quant8",
    True,
    "int8",
    "the INT8 integer path: int8 activations, per-channel int8 weights, int32 accumulators (spec section 3)",
    "the output tensor's INT8 scale",
    "int8 clamp events at requantization",
)

MODES: tuple[Mode, ...] = (FP32, QUANT16, BITTRUE, QUANT8)  # the one ordered list
MODE_NAMES: tuple[str, ...] = tuple(m.name for m in MODES)
REFERENCE = FP32  # what every other mode is compared with


def get_mode(name: str | Mode) -> Mode:
    """The Mode called `name` (a Mode passes through); UnsupportedError listing the known ones."""
    if isinstance(name, Mode):
        return name
    for mode in MODES:
        if mode.name == name:
            return mode
    raise UnsupportedError(f"mode '{name}' is not available (known: {', '.join(MODE_NAMES)})")
