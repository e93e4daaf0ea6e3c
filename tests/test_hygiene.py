"""Code hygiene the brief asks for and ruff cannot check: type hints on every public function, and
the golden model, generator and application importing without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("cmamba_hls", "intsim", "codegen", "hls_tb", "model")
# Packages that must import (every module of them) with torch absent; model/ is the torch half.
TORCH_FREE = ("cmamba_hls", "intsim", "codegen", "hls_tb")


def _unannotated(body: list[ast.stmt], prefix: str) -> list[str]:
    """Public functions and methods (not nested in a function) in `body` missing an argument or
    return annotation, as 'qualname(what is missing)'. `__init__` needs no return annotation."""
    found = []
    for node in body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            found += _unannotated(node.body, f"{prefix}{node.name}.")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
            not node.name.startswith("_") or node.name == "__init__"
        ):
            a = node.args
            missing = [
                arg.arg
                for arg in a.posonlyargs + a.args + a.kwonlyargs
                if arg.annotation is None and arg.arg not in ("self", "cls")
            ]
            missing += [f"*{arg.arg}" for arg in (a.vararg, a.kwarg) if arg is not None and arg.annotation is None]
            if node.returns is None and node.name != "__init__":
                missing.append("return")
            if missing:
                found.append(f"{prefix}{node.name}({', '.join(missing)})")
    return found


def test_public_functions_have_type_hints():
    missing = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            missing += [f"{rel}: {f}" for f in _unannotated(ast.parse(path.read_text(), rel).body, "")]
    assert not missing, "public functions without full type hints:\n" + "\n".join(missing)


BLOCK_TORCH = """
import importlib, importlib.abc, pkgutil, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
sys.meta_path.insert(0, NoTorch())
for pkg in sys.argv[1:]:
    importlib.import_module(pkg)
    for mod in pkgutil.walk_packages(sys.modules[pkg].__path__, pkg + "."):
        importlib.import_module(mod.name)
"""


def test_golden_model_generator_and_cli_import_without_torch():
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH, *TORCH_FREE], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
