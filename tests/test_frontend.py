"""model/frontend.py and `cmamba-hls import-module`: PyTorch modules traced onto the op registry.

- the shipped CMamba-slim module traces to exactly model/export.py's export (layers, ops,
  attrs, names, hyper, weight files byte for byte);
- two variants (examples/import/modules.py): CMamba-slim with other widths and depth, and a
  Mamba-style module (time-major Linear projections, chunked in_proj, padded-and-cut causal
  conv, nn.RMSNorm, flattened Linear head, no residual in its last block): the written graph's
  fp32 reference equals the module, and after calibration the generated C++ (INT16 and INT8)
  is bit-exact with the golden model;
- unsupported nodes (LayerNorm, GELU, a constant factor, broadcasting, non-causal padding, ...)
  fail with the node, its source line and the op named, and nothing is written;
- the command line: success, and one error line for each bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is not installed")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from cmamba_hls.cli import main  # noqa: E402
from codegen.build import run_testbench  # noqa: E402
from codegen.project import generate_project  # noqa: E402
from intsim import load_model  # noqa: E402
from intsim.calibrate import calibrate  # noqa: E402
from model.cmamba import CMambaSlim  # noqa: E402
from model.export import export_model  # noqa: E402
from model.frontend import FrontendError, from_module, trace_module  # noqa: E402
from model.load import load_torch_model  # noqa: E402
from tests.cpp_harness import build_project_cached  # noqa: E402
from tests.torch_models import TINY_REVIN_DIMS, tiny_revin_cmamba  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "examples" / "default"
EXAMPLES = REPO / "examples" / "import" / "modules.py"


def _examples():
    import importlib.util

    spec = importlib.util.spec_from_file_location("frontend_example_modules", EXAMPLES)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MODULES = _examples()


def torch_forward(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module.eval()(torch.from_numpy(x.astype(np.float32))).double().numpy()


# ------------------------------------------------------------------ the shipped module
def test_shipped_module_traces_to_the_exporters_graph(tmp_path):
    shipped = json.loads((DEFAULT_MODEL / "model.json").read_text())
    module = load_torch_model(DEFAULT_MODEL)
    kw = dict(normalization=shipped["normalization"], columns=shipped["input"]["columns"], name=shipped["name"])
    exported = export_model(module, tmp_path / "export", kw["normalization"], kw["columns"], name=kw["name"])
    traced = from_module(module, torch.randn(2, 9, 64), tmp_path / "traced", **kw)
    a, b = (json.loads((d / "model.json").read_text()) for d in (traced, exported))
    assert a["layers"] == b["layers"] == shipped["layers"]
    for key in ("input", "output", "normalization", "hyper", "name"):
        assert a[key] == b[key], key
    files = sorted(p.name for p in (exported / "weights").iterdir())
    assert files == sorted(p.name for p in (traced / "weights").iterdir()) and len(files) == 27
    for name in files:
        assert (traced / "weights" / name).read_bytes() == (exported / "weights" / name).read_bytes(), name


def test_revin_module_traces_to_the_revin_ops(tmp_path):
    """`train`'s defaults (RevIN, head_proj): the traced graph is the exporter's, revin_norm first and
    revin_denorm (forecast, window) last, with the hyper load_torch_model reads back; the learned
    RevIN affine is refused naming the parameter (export folds it, a trace has no op for it)."""
    module = tiny_revin_cmamba(3, head_dim=5)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = 3.0 + 2.0 * np.random.default_rng(5).standard_normal((6, 3, 16))
    exported = export_model(module, tmp_path / "export", None, None, name="m")
    traced = from_module(module, torch.from_numpy(x).float(), tmp_path / "traced", name="m")
    a, b = (json.loads((d / "model.json").read_text()) for d in (traced, exported))
    assert a["layers"] == b["layers"] and a["hyper"] == b["hyper"] and a["output"] == b["output"]
    assert [(e["name"], e["op"], e["inputs"]) for e in (a["layers"][0], a["layers"][-1])] == [
        ("revin_in", "revin_norm", ["input"]),
        ("revin_out", "revin_denorm", ["head", "input"]),
    ]
    assert a["hyper"]["revin"] is True and a["hyper"]["head_dim"] == 5
    np.testing.assert_allclose(load_model(traced).run(x, "fp32").output, torch_forward(module, x), atol=1e-5)
    np.testing.assert_allclose(torch_forward(load_torch_model(traced), x), torch_forward(module, x), atol=1e-6)
    affine = CMambaSlim(**TINY_REVIN_DIMS, revin_affine=True)
    with pytest.raises(FrontendError, match="revin.weight"):
        from_module(affine, torch.from_numpy(x).float(), tmp_path / "affine")
    assert not (tmp_path / "affine").exists()


# ------------------------------------------------------------------ variants, golden vs C++
@pytest.fixture(scope="module", params=["cmamba_wide", "mamba_style"])
def variant(request, tmp_path_factory):
    module, example = getattr(MODULES, request.param)()
    path = from_module(module, example, tmp_path_factory.mktemp(request.param) / "model")
    model = load_model(path)
    c_in, length = model.graph.input_shape
    calibrate(model, np.random.default_rng(1).standard_normal((256, c_in, length)))
    return request.param, module, load_model(path)


def test_variants_trace_to_the_modules_function(variant):
    name, module, model = variant
    graph = model.graph
    x = 1.5 * np.random.default_rng(7).standard_normal((16, *graph.input_shape))
    np.testing.assert_allclose(model.run(x, "fp32").output, torch_forward(module, x), atol=1e-5, rtol=0)
    ops = [layer.op for layer in graph.layers]
    if name == "cmamba_wide":  # canonical CMamba-slim: export names, hyper, readable by load_torch_model
        assert graph.raw["hyper"] | {} == {
            "d_model": 16,
            "d_inner": 24,
            "n_blocks": 3,
            "patch": 4,
            "stride": 2,
            "d_conv": 3,
            "horizon": 5,
            "eps": 1e-5,
        }
        assert ops.count("add") == 3 and graph.layers[-1].name == "head"
        np.testing.assert_allclose(torch_forward(load_torch_model(graph.path), x), torch_forward(module, x), atol=1e-6)
    else:  # module-path names; the last block has no residual add
        assert "hyper" not in graph.raw
        assert [layer.name for layer in graph.layers if layer.op == "add"] == ["layers.0.add"]
        assert graph.layer("layers.1.conv1d").op == "dwconv" and graph.layer("head").attrs["kernel"] == 15
        assert graph.layer("layers.0.in_proj.ch0_20").shape == (20, 15)
        assert graph.layer("layers.0.in_proj.ch20_40").shape == (20, 15)
        assert graph.layer("norm_f").attrs["eps"] == float(torch.finfo(torch.float32).eps)


@pytest.mark.parametrize("precision", ["int16", "int8"])
def test_variants_run_bit_exact_golden_vs_cpp(variant, precision, tmp_path):
    _, _, model = variant
    gen = generate_project(model, tmp_path / "p", precision=precision, n_vectors=60, layers=True)
    build_project_cached(gen.out_dir)
    tb = run_testbench(gen.out_dir)
    assert (tb.passed, tb.failed, tb.returncode) == (60, 0, 0), tb.stdout


# ------------------------------------------------------------------ the other plumbing
class _Plumbing(nn.Module):
    """F.pad + depthwise conv, torch.split and a slice of convs (one without bias), a Linear
    between permutes, `+=`, a Linear head on a channel-major flatten, head sliced."""

    def __init__(self, c=3, d=6, e=10, length=12):
        super().__init__()
        self.embed = nn.Conv1d(c, d, 3, stride=3, bias=False)
        self.proj = nn.Conv1d(d, 2 * e, 1)
        self.dw = nn.Conv1d(e, e, 2, groups=e)
        self.mix = nn.Linear(e, e)
        self.back = nn.Conv1d(e, d + 2, 1)
        self.head = nn.Linear(d * (length // 3), 2 * c + 3)
        self.c = c

    def forward(self, x):
        h = self.embed(x)
        u, z = torch.split(self.proj(h), [10, 10], dim=1)
        u = F.silu(self.dw(F.pad(u, (1, 0))))
        u = self.mix(u.permute(0, 2, 1)).permute(0, 2, 1).contiguous()
        y = u * torch.sigmoid(z)
        y = self.back(y)[:, 2:]
        y += h
        out = self.head(torch.flatten(y, 1))[:, : 2 * self.c]
        return out.view(x.size(0), self.c, 2)


def test_plumbing_maps_exactly(tmp_path):
    module = _Plumbing().eval()
    torch.manual_seed(3)
    path = from_module(module, torch.randn(2, 3, 12), tmp_path / "m")
    graph = load_model(path).graph
    assert [(layer.name, layer.op) for layer in graph.layers] == [
        ("embed", "conv_kx1"),
        ("proj.ch0_10", "conv1x1"),
        ("proj.ch10_20", "conv1x1"),
        ("dw", "dwconv"),
        ("silu", "silu"),
        ("mix", "conv1x1"),
        ("sigmoid", "sigmoid"),
        ("mul", "mul"),
        ("back.ch2_8", "conv1x1"),
        ("add", "add"),
        ("head.ch0_6", "conv_kx1"),
    ]
    assert graph.layer("embed").weights["bias"].tolist() == [0.0] * 6
    assert (graph.output_channels, graph.horizon) == (3, 2)
    x = np.random.default_rng(5).standard_normal((8, 3, 12))
    np.testing.assert_allclose(load_model(path).run(x, "fp32").output, torch_forward(module, x), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ unsupported nodes
class _Seq(nn.Module):
    """embed -> body(h) -> head: small modules whose `body` holds the node under test."""

    def __init__(self, body, c=3, d=8, length=16):
        super().__init__()
        self.embed = nn.Conv1d(c, d, 4, stride=4)
        self.body = body
        self.head = nn.Conv1d(d, 2 * c, length // 4)
        self.c = c

    def forward(self, x):
        return self.head(self.body(self.embed(x))).reshape(-1, self.c, 2)


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, h):
        return self.fn(h)


def _gelu(h):
    return F.gelu(h)


def _half(h):
    return h * 0.5


def _broadcast(h):
    return h + h[:, :1]


def _layer_norm(h):
    return F.layer_norm(h.transpose(1, 2), (8,)).transpose(1, 2)


BAD = [
    ("layernorm", lambda: MODULES.with_layernorm(), "'act' (LayerNorm module 'act')", "LayerNorm has no op"),
    ("gelu", lambda: MODULES.with_gelu(), "'act' (GELU module 'act')", "GELU has no op"),
    (
        "F.gelu",
        lambda: (_Seq(_Fn(_gelu)), torch.randn(1, 3, 16)),
        "node 'gelu' (function torch._C._nn.gelu)",
        "return F.gelu(h)",
    ),
    (
        "F.layer_norm",
        lambda: (_Seq(_Fn(_layer_norm)), torch.randn(1, 3, 16)),
        "node 'layer_norm'",
        "layer_norm has no op",
    ),
    ("constant", lambda: (_Seq(_Fn(_half)), torch.randn(1, 3, 16)), "node 'mul'", "with the constant 0.5"),
    (
        "broadcast",
        lambda: (_Seq(_Fn(_broadcast)), torch.randn(1, 3, 16)),
        "node 'getitem'",
        "selects part of the channel axis",
    ),
    (
        "same-padding dwconv",
        lambda: (_Seq(nn.Conv1d(8, 8, 3, groups=8, padding=1)), torch.randn(1, 3, 16)),
        "node 'body'",
        "padding=1 is not causal",
    ),
    (
        "Linear over time",
        lambda: (_Seq(nn.Linear(4, 4)), torch.randn(1, 3, 16)),
        "node 'body'",
        "transpose to [B, L, C] first",
    ),
    (
        "batchnorm",
        lambda: (_Seq(nn.BatchNorm1d(8)), torch.randn(1, 3, 16)),
        "BatchNorm1d module 'body'",
        "BatchNorm1d has no op",
    ),
    (
        "seq2seq output",
        lambda: (nn.Sequential(nn.Conv1d(3, 3, 1)), torch.randn(1, 3, 16)),
        "node 'output'",
        "[C_out*H, 1]",
    ),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_unsupported_nodes_fail_naming_node_line_and_op(case, tmp_path):
    _, make, node_part, reason = case
    module, example = make()
    with pytest.raises(FrontendError) as err:
        from_module(module, example, tmp_path / "out")
    msg = str(err.value)
    assert msg.startswith("cannot map node '") and node_part in msg and reason in msg, msg
    assert "\n" not in msg and (
        " at tests/test_frontend.py:" in msg
        or " at examples/import/modules.py:" in msg
        or "source line unknown" in msg
        and "output" in node_part
    ), msg
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


class _Branchy(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


def test_untraceable_module_and_bad_example_are_one_line_errors(tmp_path):
    with pytest.raises(FrontendError, match=r"^torch.fx cannot trace _Branchy: TraceError: symbolically traced"):
        trace_module(_Branchy(), torch.randn(1, 3, 16))
    with pytest.raises(FrontendError, match=r"does not run on the example input \[1, 5, 16\]: RuntimeError"):
        trace_module(_Seq(nn.Identity()), torch.randn(1, 5, 16))
    with pytest.raises(FrontendError, match=r"example input must be a float tensor \[B, C_in, L\].*\[3, 16\]"):
        trace_module(_Seq(nn.Identity()), torch.randn(3, 16))


# ------------------------------------------------------------------ the command line
def test_cli_import_module_then_info(tmp_path, capsys):
    out = tmp_path / "ms"
    assert main(["import-module", f"{EXAMPLES}:mamba_style", "--out", str(out), "--name", "mamba-style"]) == 0
    text = capsys.readouterr().out
    assert "fp32 reference vs the module on the example input [2, 9, 64]: max |diff|" in text
    assert "layers.1.in_proj.ch20_40" in text and f"run `cmamba-hls calibrate {out} --data CSV`" in text
    raw = json.loads((out / "model.json").read_text())
    assert raw["name"] == "mamba-style" and raw["training"]["imported"]["class"] == "MambaStyle"
    assert main(["info", str(out)]) == 0


def test_cli_import_module_input_shape_and_like(tmp_path, capsys):
    factory = tmp_path / "mine.py"
    factory.write_text(
        f"from model.load import load_torch_model\ndef build():\n    return load_torch_model({str(DEFAULT_MODEL)!r})\n"
    )
    assert main(["import-module", f"{factory}:build", "--out", str(tmp_path / "m")]) == 2
    assert "returned no example input: pass --input-shape C,L" in capsys.readouterr().err
    assert (
        main(
            [
                "import-module",
                f"{factory}:build",
                "--out",
                str(tmp_path / "m"),
                "--input-shape",
                "9,64",
                "--like",
                str(DEFAULT_MODEL),
            ]
        )
        == 0
    )
    a, b = (json.loads((d / "model.json").read_text()) for d in (tmp_path / "m", DEFAULT_MODEL))
    assert a["layers"] == b["layers"] and a["normalization"] == b["normalization"] and a["input"] == b["input"]


def test_cli_import_module_bad_input_is_one_line(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("def build(:\n")
    raising = tmp_path / "raising.py"
    raising.write_text("def build():\n    raise RuntimeError('no weights here')\n")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    cases = [
        (["nocolon.py"], "expected PY_FILE:FACTORY"),
        ([f"{tmp_path}/missing.py:build"], "missing.py: file not found"),
        ([f"{broken}:build"], "broken.py: importing it failed (line 1): SyntaxError"),
        ([f"{raising}:build"], "raising.py:build() raised RuntimeError: no weights here"),
        ([f"{EXAMPLES}:nothing"], "modules.py: defines no function 'nothing'"),
        ([f"{EXAMPLES}:with_gelu"], "cannot map node 'act' (GELU module 'act') at "),
        ([f"{EXAMPLES}:mamba_style", "--input-shape", "3"], "--input-shape must be C,L"),
    ]
    for argv, expected in cases:
        assert main(["import-module", *argv, "--out", str(tmp_path / "out")]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("cmamba-hls: error: ") and expected in err, (argv, err)
        assert not (tmp_path / "out").exists()
    assert main(["import-module", f"{EXAMPLES}:mamba_style", "--out", str(foreign)]) == 2
    assert "refusing to write a model into a non-empty directory" in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
