"""Run back ends beyond the built-in Numba golden model, found as plug-ins (no static import).

A package registers a back end under the entry point group `cmamba_hls.backends`
(pyproject.toml): `NAME = "package.module:factory"`, where `factory(model)` returns an object
with `run(x, mode, capture) -> RunResult`. `Model.run(x, mode, backend=NAME)` loads it on first
use (so intsim never imports the plug-in's dependencies, e.g. torch, unless asked) and keeps
one instance per model. This project ships `torch` (model/torch_backend.py, the 'train' extra).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from intsim.errors import UnsupportedError

if TYPE_CHECKING:
    from intsim.executor import Model

GROUP = "cmamba_hls.backends"
BUILTIN = "numba"  # the golden model itself (intsim.executor)


def plugin_names() -> list[str]:
    """The registered plug-in back ends (installed entry points), sorted."""
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load_backend(name: str, model: Model) -> object:
    """Instantiate back end `name` for `model`; UnsupportedError naming the known ones when it is
    not registered or its dependencies are missing."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        raise UnsupportedError(f"back end '{name}' is not available (known: {', '.join([BUILTIN] + plugin_names())})")
    try:
        factory = found[0].load()
    except ImportError as exc:
        raise UnsupportedError(
            f"back end '{name}' needs {exc.name or exc} (install the extra that provides it, "
            f"e.g. pip install -e '.[train]')"
        ) from exc
    return factory(model)
