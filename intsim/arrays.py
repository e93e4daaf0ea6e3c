"""Array aliases for type hints: numpy arrays of the integer (and float64) element types the
kernels and their callers pass around. Hints only; nothing checks them at run time."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

I8Array = NDArray[np.int8]
I16Array = NDArray[np.int16]
I32Array = NDArray[np.int32]
I64Array = NDArray[np.int64]
IntArray = NDArray[np.integer]  # any integer width (layout helpers, program buffers)
F64Array = NDArray[np.float64]
