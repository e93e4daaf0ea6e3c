"""Typed errors. Each message names the file, layer and field at fault.

The CLI prints any CmambaError as one line `cmamba-hls: error: ...` and exits 2.
"""


class CmambaError(ValueError):
    """Base of every error the tool reports to a user (not a bug)."""


class ModelFormatError(CmambaError):
    """model.json / weights/*.npy are malformed, inconsistent or of an unknown version."""


class QuantizationError(CmambaError):
    """Missing or invalid quantization parameters (e.g. bittrue before calibrate)."""


class DataError(CmambaError):
    """Input data is malformed: wrong shape or channel count, NaN/Inf, unreadable file."""


class UnsupportedError(CmambaError):
    """A back end cannot run an op or format; names the layer. Never silently replaced."""
