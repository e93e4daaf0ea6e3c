"""model/checkpoint.py and `cmamba-hls import`: foreign checkpoints of the shipped model.

Three naming styles built from examples/default's weights (Mamba-style renamed, exported
Linear-shaped with a split in_proj, DataParallel + torch.compile prefixed under 'state_dict'),
as .pt and .safetensors, import to exactly the shipped weights; quantization parameters in the
checkpoint are kept (and checked); a truncated file, a pickle that weights_only refuses, a
wrong-shape / missing / non-finite / integer tensor, unused keys under --strict and a bad
--config are one error line, with nothing written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is not installed")

from cmamba_hls.cli import main  # noqa: E402
from intsim import load_model  # noqa: E402
from intsim.calibrate import calibrate  # noqa: E402
from model.checkpoint import canonical_key, normalize_state_dict  # noqa: E402
from model.load import load_torch_model  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "examples" / "default"
N_KEYS = 23  # CMambaSlim state dict of the shipped model


@pytest.fixture(scope="module")
def state_dict():
    return load_torch_model(DEFAULT_MODEL).state_dict()


def mamba_named(sd: dict) -> dict:
    """backbone.layers.N.mixer.{in_proj, conv1d, ...}, backbone.embedding, lm_head."""
    out = {}
    for key, value in sd.items():
        key = (
            key.replace("blocks.", "backbone.layers.")
            .replace("patch_embed", "backbone.embedding")
            .replace("norm_f", "backbone.norm_f")
            .replace("head", "lm_head")
        )
        for sub in ("in_proj", "dwconv", "dt_proj", "out_proj"):
            key = key.replace(f".{sub}.", f".mixer.{sub}.")
        out[key.replace("mixer.dwconv", "mixer.conv1d")] = value
    return out


def linear_shaped(_sd=None) -> dict:
    """The model directory's own names and shapes: 1x1 convs as Linear [out, in], dwconv [E, K],
    in_proj split into in_proj_u / in_proj_z."""
    raw = json.loads((DEFAULT_MODEL / "model.json").read_text())
    return {
        f"{layer['name']}.{key}": torch.from_numpy(np.load(DEFAULT_MODEL / rel))
        for layer in raw["layers"]
        for key, rel in (layer.get("weights") or {}).items()
    }


def data_parallel(sd: dict) -> dict:
    return {"state_dict": {f"module._orig_mod.{k}": v for k, v in sd.items()}, "epoch": 3, "optimizer": {"lr": 1e-3}}


def save(obj, path: Path) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in obj.items()}, str(path))
    else:
        torch.save(obj, path)
    return path


def import_ckpt(ckpt, out, *extra, like=DEFAULT_MODEL) -> int:
    return main(["import", str(ckpt), "--like", str(like), "--out", str(out), *extra])


def assert_shipped_weights(out: Path) -> None:
    files = sorted((DEFAULT_MODEL / "weights").glob("*.npy"))
    assert sorted(p.name for p in (out / "weights").glob("*.npy")) == [f.name for f in files]
    for f in files:
        np.testing.assert_array_equal(np.load(out / "weights" / f.name), np.load(f), err_msg=f.name)
    a, b = (json.loads((d / "model.json").read_text()) for d in (out, DEFAULT_MODEL))
    assert a["layers"] == b["layers"] and a["normalization"] == b["normalization"] and a["hyper"] == b["hyper"]


STYLES = [
    ("mamba", mamba_named, ".pt"),
    ("mamba", mamba_named, ".safetensors"),
    ("linear", linear_shaped, ".pth"),
    ("linear", linear_shaped, ".safetensors"),
    ("dataparallel", data_parallel, ".pt"),
]


@pytest.mark.parametrize("style,make,suffix", STYLES, ids=[f"{s}{x}" for s, _, x in STYLES])
def test_naming_styles_import_to_the_shipped_weights(state_dict, style, make, suffix, tmp_path, capsys):
    ckpt = save(make(state_dict), tmp_path / f"ckpt{suffix}")
    assert import_ckpt(ckpt, tmp_path / "out") == 0
    text = capsys.readouterr().out
    assert_shipped_weights(tmp_path / "out")
    assert "missing (0): none" in text and "unused (0): none" in text
    if style == "mamba":
        assert "backbone.layers.1.mixer.conv1d.weight -> blocks.1.dwconv.weight" in text
        assert "lm_head.bias -> head.bias" in text and "reshaped (0): none" in text
    elif style == "linear":
        assert f"mapped ({N_KEYS + 4}, from -> to)" in text  # 2 blocks x 2 in_proj halves x (weight, bias)
        assert "blk0.dt_proj.weight: [64, 64] -> [64, 64, 1]" in text
        assert "blk1.dwconv.weight: [64, 4] -> [64, 1, 4]" in text
        assert "reshaped (10):" in text and "blk1.in_proj_u.bias + blk1.in_proj_z.bias -> blocks.1.in_proj.bias" in text
    else:
        assert "under 'state_dict'); other entries not read: epoch, optimizer" in text
        assert "module._orig_mod.blocks.0.in_proj.weight -> blocks.0.in_proj.weight" in text
    record = json.loads((tmp_path / "out" / "model.json").read_text())["training"]
    assert record["imported"]["checkpoint"] == ckpt.name and record["command"].startswith("cmamba-hls import ")
    assert "quant" not in json.loads((tmp_path / "out" / "model.json").read_text())


def test_config_instead_of_like(state_dict, tmp_path, capsys):
    ckpt = save(state_dict, tmp_path / "plain.pt")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"d_model": 32, "n_blocks": 2, "name": "from-config"}))
    assert main(["import", str(ckpt), "--config", str(cfg), "--out", str(tmp_path / "out")]) == 0
    raw = json.loads((tmp_path / "out" / "model.json").read_text())
    assert raw["name"] == "from-config" and "columns" not in raw["input"]
    assert raw["normalization"]["input"] == {"mean": [0.0] * 9, "std": [1.0] * 9}
    x = np.random.default_rng(0).standard_normal((4, 9, 64))
    np.testing.assert_array_equal(
        load_model(tmp_path / "out").run(x, "fp32").output, load_model(DEFAULT_MODEL).run(x, "fp32").output
    )
    assert "no INT16 / INT8 quantization parameters: run `cmamba-hls calibrate" in capsys.readouterr().out


def test_quant_parameters_in_the_checkpoint_are_kept_and_checked(state_dict, tmp_path, capsys):
    calibrated = tmp_path / "calibrated"
    shutil.copytree(DEFAULT_MODEL, calibrated)
    model = load_model(calibrated)
    calibrate(model, np.random.default_rng(0).standard_normal((64, 9, 64)))
    quant = load_model(calibrated).graph.quant
    ckpt = save({"model": dict(state_dict), "quant": quant}, tmp_path / "with_quant.pt")
    assert import_ckpt(ckpt, tmp_path / "out") == 0
    assert "quant: kept from the checkpoint (int16, int8)" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "model.json").read_text())["quant"] == quant
    x = np.random.default_rng(1).standard_normal((8, 9, 64))
    for mode in ("bittrue", "quant8"):
        np.testing.assert_array_equal(
            load_model(tmp_path / "out").run(x, mode).output_q, load_model(calibrated).run(x, mode).output_q
        )
    del quant["int16"]["tensors"]["blk1.gate"]
    bad = save({"model": dict(state_dict), "quant": quant}, tmp_path / "bad_quant.pt")
    assert import_ckpt(bad, tmp_path / "out2") == 2
    err = capsys.readouterr().err
    assert "bad_quant.pt: its quantization parameters ('quant') do not fit the model" in err and "blk1.gate" in err
    assert not (tmp_path / "out2").exists() and not list(tmp_path.glob(".out2*"))


class NotATensor:
    pass


def _variants(sd):
    wrong = dict(sd)
    wrong["blocks.1.dt_proj.weight"] = torch.zeros(64, 32, 1)
    missing = {k: v for k, v in sd.items() if k != "head.bias"}
    nan = dict(sd)
    nan["norm_f.weight"] = torch.full((32,), float("nan"))
    ints = dict(sd)
    ints["patch_embed.bias"] = torch.zeros(32, dtype=torch.int8)
    twice = dict(sd)
    twice["module.head.bias"] = sd["head.bias"]
    return [
        (
            "wrong shape",
            wrong,
            ".pt",
            "shape mismatch: blocks.1.dt_proj.weight is [64, 32, 1], blocks.1.dt_proj.weight needs [64, 64, 1]",
        ),
        ("missing", missing, ".pt", "1 required weight(s) missing: head.bias"),
        ("nan", nan, ".pt", "norm_f.weight contains NaN/Inf"),
        ("int8", ints, ".pt", "patch_embed.bias has dtype int8; expected floating-point"),
        ("conflict", twice, ".pt", "head.bias and module.head.bias both map to head.bias"),
        (
            "refused pickle",
            {"state_dict": sd, "config": NotATensor()},
            ".pt",
            "refused by torch.load(weights_only=True): Unsupported global tests.test_checkpoint.NotATensor; ",
        ),
        ("no tensors", {"epoch": 3}, ".pt", "holds no tensors at the top level or under 'state_dict'"),
    ]


def test_bad_checkpoints_are_one_error_line_and_nothing_written(state_dict, tmp_path, capsys):
    for name, obj, suffix, expected in _variants(state_dict):
        ckpt = save(obj, tmp_path / f"{name.replace(' ', '_')}{suffix}")
        assert import_ckpt(ckpt, tmp_path / "out") == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"cmamba-hls: error: {ckpt}: ") and expected in err, (name, err)
        assert not (tmp_path / "out").exists(), name


def test_truncated_files_unknown_type_and_missing_file(state_dict, tmp_path, capsys):
    for suffix, expected in (
        (".pt", "cannot read the checkpoint (truncated or not a torch file?)"),
        (".safetensors", "cannot read the safetensors file (truncated or corrupt?)"),
    ):
        ckpt = save(dict(state_dict), tmp_path / f"whole{suffix}")
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
        assert import_ckpt(cut, tmp_path / "out") == 2
        err = capsys.readouterr().err
        assert err.startswith(f"cmamba-hls: error: {cut}: {expected}") and err.count("\n") == 1, err
    npz = tmp_path / "w.npz"
    npz.write_bytes(b"x")
    assert import_ckpt(npz, tmp_path / "out") == 2
    assert "unknown checkpoint type '.npz' (known: .pt, .pth, .bin, .ckpt, .safetensors)" in capsys.readouterr().err
    assert import_ckpt(tmp_path / "nope.pt", tmp_path / "out") == 2
    assert "nope.pt: checkpoint file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unused_keys_listed_and_strict_makes_them_errors(state_dict, tmp_path, capsys):
    extra = mamba_named(state_dict) | {
        "backbone.layers.0.mixer.A_log": torch.zeros(64, 2),
        "backbone.layers.0.mixer.in_proj.activation_post_process.scale": torch.ones(1),
    }
    ckpt = save(extra, tmp_path / "extra.pt")
    assert import_ckpt(ckpt, tmp_path / "out") == 0
    text = capsys.readouterr().out
    assert "unused (2):\n  backbone.layers.0.mixer.A_log\n" in text
    assert "activation_post_process.scale  (quantization parameter: not read)" in text
    assert import_ckpt(ckpt, tmp_path / "strict", "--strict") == 2
    captured = capsys.readouterr()
    assert "error: --strict: 2 unused key(s): backbone.layers.0.mixer.A_log" in captured.out
    assert (
        "the checkpoint holds Mamba-1 (S6) weights (backbone.layers.0.mixer.A_log) but the target has simple "
        "blocks: import it with --config '{\"block\": \"s6\"" in captured.err
    )
    assert not (tmp_path / "strict").exists()


def test_bad_config_and_foreign_out_dir(state_dict, tmp_path, capsys):
    ckpt = save(dict(state_dict), tmp_path / "plain.pt")
    for config, expected in (
        ('{"d_modle": 32}', "--config: unknown key(s) d_modle"),
        ('{"n_blocks": 0}', "--config: n_blocks must be a positive integer, got 0"),
        ('{"length": 4}', "--config: lookback 4 is shorter than the patch 8"),
        ("{oops", "--config: malformed JSON"),
        (str(tmp_path / "none.json"), "none.json: cannot read the --config file"),
    ):
        assert main(["import", str(ckpt), "--config", config, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "model.json").write_text("{}")
    assert import_ckpt(ckpt, foreign) == 2
    assert "refusing to write a model into a non-empty directory" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["model.json"]


def test_normalize_state_dict_with_a_shape_table():
    target = {"blocks.0.in_proj.weight": (8, 4, 1), "blocks.0.in_proj.bias": (8,), "norm_f.weight": (4,)}
    res = normalize_state_dict(
        {
            "model.layers_0.mixer.in_proj_x.weight": torch.ones(4, 4),
            "model.layers_0.mixer.in_proj_z.weight": torch.zeros(4, 4, 1),
            "layers.0.in_proj.bias": torch.arange(8.0),
            "final_norm.gamma": torch.ones(4),
            "layers.0.mixer.D": torch.ones(4),
        },
        target,
    )
    assert res.errors() == [] and res.unused == ["layers.0.mixer.D"] and res.missing == []
    w = res.state_dict["blocks.0.in_proj.weight"]
    assert w.shape == (8, 4, 1) and w[:4].eq(1).all() and w[4:].eq(0).all()
    assert res.errors(strict=True) == [res.hint, "--strict: 1 unused key(s): layers.0.mixer.D"]
    assert res.hint.startswith("the checkpoint holds Mamba-1 (S6) weights (layers.0.mixer.D) but the target has simple")
    half = normalize_state_dict({"layers.0.in_proj_u.weight": torch.ones(4, 4)}, target)
    assert "blocks.0.in_proj.weight (the in_proj_z half; found only layers.0.in_proj_u.weight)" in half.errors()[0]
    assert canonical_key("module.blk3.conv1d.bias") == ("blocks.3.dwconv.bias", None)
    assert canonical_key("encoder.weight") is None and canonical_key("blocks.0.norm.bias") is None


class MambaMixer(torch.nn.Module):
    """A Mamba-1 mixer written the way mamba-minimal / mamba_ssm write it (time-major [B, L, D],
    Linear projections without biases, Conv1d(padding=K-1) cut to L, A_log and D on the mixer):
    an independent reference for the S6 block's import."""

    def __init__(self, d_model: int, d_inner: int, d_state: int, dt_rank: int, d_conv: int):
        super().__init__()
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, dt_rank
        self.in_proj = torch.nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = torch.nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = torch.nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = torch.nn.Linear(dt_rank, d_inner, bias=True)
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = torch.nn.Parameter(torch.log(a) + 0.1 * torch.randn(d_inner, d_state))
        self.D = torch.nn.Parameter(1.0 + 0.1 * torch.randn(d_inner))
        self.out_proj = torch.nn.Linear(d_inner, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        u, res = self.in_proj(x).split([self.d_inner, self.d_inner], dim=-1)
        u = torch.nn.functional.silu(self.conv1d(u.transpose(1, 2))[:, :, :length].transpose(1, 2))
        delta, b, c = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = torch.nn.functional.softplus(self.dt_proj(delta))  # [B, L, E]
        decay = torch.exp(torch.einsum("ble,en->blen", delta, -torch.exp(self.A_log)))
        inject = torch.einsum("ble,bln,ble->blen", delta, b, u)
        h, ys = torch.zeros_like(decay[:, 0]), []
        for t in range(length):
            h = decay[:, t] * h + inject[:, t]
            ys.append(torch.einsum("ben,bn->be", h, c[:, t]))
        y = torch.stack(ys, dim=1) + u * self.D
        return self.out_proj(y * torch.nn.functional.silu(res))


class MambaRMSNorm(torch.nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = torch.nn.Parameter(1.0 + 0.1 * torch.randn(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


class MambaForecaster(torch.nn.Module):
    """backbone.{patch_embed, layers.N.{norm, mixer.*}, norm_f} + head: CMamba-slim's S6 network in
    mamba_ssm's key naming (residual blocks x + mixer(norm(x)))."""

    def __init__(self, cfg: dict):
        super().__init__()
        d, self.cfg = cfg["d_model"], cfg
        self.backbone = torch.nn.Module()
        self.backbone.patch_embed = torch.nn.Conv1d(cfg["c_in"], d, cfg["patch"], stride=cfg["stride"])
        self.backbone.layers = torch.nn.ModuleList()
        for _ in range(cfg["n_blocks"]):
            layer = torch.nn.Module()
            layer.norm = MambaRMSNorm(d)
            layer.mixer = MambaMixer(d, cfg["d_inner"], cfg["d_state"], cfg["dt_rank"], cfg["d_conv"])
            self.backbone.layers.append(layer)
        self.backbone.norm_f = MambaRMSNorm(d)
        tokens = (cfg["length"] - cfg["patch"]) // cfg["stride"] + 1
        self.head = torch.nn.Conv1d(d, cfg["c_in"] * cfg["horizon"], tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.backbone.patch_embed(x).transpose(1, 2)  # [B, T, D]
        for layer in self.backbone.layers:
            h = h + layer.mixer(layer.norm(h))
        y = self.head(self.backbone.norm_f(h).transpose(1, 2))
        return y.reshape(x.shape[0], self.cfg["c_in"], self.cfg["horizon"])


MAMBA_CFG = {
    "c_in": 3,
    "c_out": 3,
    "length": 32,
    "patch": 8,
    "stride": 4,
    "d_model": 16,
    "d_inner": 24,
    "n_blocks": 2,
    "d_conv": 4,
    "horizon": 4,
    "block": "s6",
    "d_state": 4,
    "dt_rank": 2,
}


def test_mamba_mixer_checkpoint_imports_onto_s6_blocks(tmp_path, capsys):
    torch.manual_seed(0)
    ref = MambaForecaster(MAMBA_CFG).eval()
    ckpt = save(ref.state_dict(), tmp_path / "mamba.pt")
    assert main(["import", str(ckpt), "--config", json.dumps(MAMBA_CFG), "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    for frm, to in (
        ("backbone.layers.1.mixer.A_log", "blocks.1.A_log"),
        ("backbone.layers.0.mixer.D", "blocks.0.D"),
        ("backbone.layers.0.mixer.x_proj.weight", "blocks.0.x_proj.weight"),
        ("backbone.layers.1.mixer.conv1d.bias", "blocks.1.dwconv.bias"),
    ):
        assert f"  {frm} -> {to}\n" in text
    assert "backbone.layers.0.mixer.x_proj.weight: [10, 24] -> [10, 24, 1]" in text
    assert "zero bias (the checkpoint's layer has no bias) (6):" in text and "  blocks.1.out_proj.bias\n" in text
    assert "missing (0): none" in text and "unused (0): none" in text
    x = torch.randn(16, 3, 32)
    with torch.no_grad():
        want = ref(x).numpy()
    model = load_model(tmp_path / "out")
    got = model.run(x.numpy().astype(np.float64), "fp32").output
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    calibrate(model, np.random.default_rng(0).standard_normal((64, 3, 32)))
    model = load_model(tmp_path / "out")
    for mode, tol in (("bittrue", 0.05), ("quant8", 0.25)):
        res = model.run(x.numpy().astype(np.float64), mode)
        err = np.abs(res.output - want).max()
        assert res.output.shape == want.shape and err < tol * np.abs(want).max(), (mode, err)


def test_mamba_checkpoint_onto_the_wrong_sizes_names_the_keys(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = save(MambaForecaster(MAMBA_CFG).state_dict(), tmp_path / "mamba.pt")
    simple = {k: v for k, v in MAMBA_CFG.items() if k not in ("block", "d_state", "dt_rank")}
    for cfg, expected in (
        (
            simple,
            "the checkpoint holds Mamba-1 (S6) weights (backbone.layers.0.mixer.A_log, "
            "backbone.layers.0.mixer.D, backbone.layers.0.mixer.x_proj.weight, ...) but the "
            "target has simple blocks",
        ),
        (
            MAMBA_CFG | {"d_state": 8},
            "shape mismatch: backbone.layers.0.mixer.A_log is [24, 4], blocks.0.A_log needs [24, 8] (and 3 more",
        ),
    ):
        assert main(["import", str(ckpt), "--config", json.dumps(cfg), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
        assert not (tmp_path / "out").exists()
