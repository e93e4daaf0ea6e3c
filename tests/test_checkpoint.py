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
N_KEYS = 23                     # CMambaSlim state dict of the shipped model


@pytest.fixture(scope="module")
def state_dict():
    return load_torch_model(DEFAULT_MODEL).state_dict()


def mamba_named(sd: dict) -> dict:
    """backbone.layers.N.mixer.{in_proj, conv1d, ...}, backbone.embedding, lm_head."""
    out = {}
    for key, value in sd.items():
        key = (key.replace("blocks.", "backbone.layers.").replace("patch_embed", "backbone.embedding")
               .replace("norm_f", "backbone.norm_f").replace("head", "lm_head"))
        for sub in ("in_proj", "dwconv", "dt_proj", "out_proj"):
            key = key.replace(f".{sub}.", f".mixer.{sub}.")
        out[key.replace("mixer.dwconv", "mixer.conv1d")] = value
    return out


def linear_shaped(_sd=None) -> dict:
    """The model directory's own names and shapes: 1x1 convs as Linear [out, in], dwconv [E, K],
    in_proj split into in_proj_u / in_proj_z."""
    raw = json.loads((DEFAULT_MODEL / "model.json").read_text())
    return {f"{layer['name']}.{key}": torch.from_numpy(np.load(DEFAULT_MODEL / rel))
            for layer in raw["layers"] for key, rel in (layer.get("weights") or {}).items()}


def data_parallel(sd: dict) -> dict:
    return {"state_dict": {f"module._orig_mod.{k}": v for k, v in sd.items()}, "epoch": 3,
            "optimizer": {"lr": 1e-3}}


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


STYLES = [("mamba", mamba_named, ".pt"), ("mamba", mamba_named, ".safetensors"),
          ("linear", linear_shaped, ".pth"), ("linear", linear_shaped, ".safetensors"),
          ("dataparallel", data_parallel, ".pt")]


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
        assert f"mapped ({N_KEYS + 4}, from -> to)" in text       # 2 blocks x 2 in_proj halves x (weight, bias)
        assert "blk0.dt_proj.weight: [64, 64] -> [64, 64, 1]" in text and "blk1.dwconv.weight: [64, 4] -> [64, 1, 4]" in text
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
    np.testing.assert_array_equal(load_model(tmp_path / "out").run(x, "fp32").output,
                                  load_model(DEFAULT_MODEL).run(x, "fp32").output)
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
        np.testing.assert_array_equal(load_model(tmp_path / "out").run(x, mode).output_q,
                                      load_model(calibrated).run(x, mode).output_q)
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
        ("wrong shape", wrong, ".pt", "shape mismatch: blocks.1.dt_proj.weight is [64, 32, 1], "
                                      "blocks.1.dt_proj.weight needs [64, 64, 1]"),
        ("missing", missing, ".pt", "1 required weight(s) missing: head.bias"),
        ("nan", nan, ".pt", "norm_f.weight contains NaN/Inf"),
        ("int8", ints, ".pt", "patch_embed.bias has dtype int8; expected floating-point"),
        ("conflict", twice, ".pt", "head.bias and module.head.bias both map to head.bias"),
        ("refused pickle", {"state_dict": sd, "config": NotATensor()}, ".pt",
         "refused by torch.load(weights_only=True): Unsupported global tests.test_checkpoint.NotATensor; "),
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
    for suffix, expected in ((".pt", "cannot read the checkpoint (truncated or not a torch file?)"),
                             (".safetensors", "cannot read the safetensors file (truncated or corrupt?)")):
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
    extra = mamba_named(state_dict) | {"backbone.layers.0.mixer.A_log": torch.zeros(64, 2),
                                       "backbone.layers.0.mixer.in_proj.activation_post_process.scale": torch.ones(1)}
    ckpt = save(extra, tmp_path / "extra.pt")
    assert import_ckpt(ckpt, tmp_path / "out") == 0
    text = capsys.readouterr().out
    assert "unused (2):\n  backbone.layers.0.mixer.A_log\n" in text
    assert "activation_post_process.scale  (quantization parameter: not read)" in text
    assert import_ckpt(ckpt, tmp_path / "strict", "--strict") == 2
    err = capsys.readouterr().err
    assert "--strict: 2 unused key(s): backbone.layers.0.mixer.A_log" in err and not (tmp_path / "strict").exists()


def test_bad_config_and_foreign_out_dir(state_dict, tmp_path, capsys):
    ckpt = save(dict(state_dict), tmp_path / "plain.pt")
    for config, expected in (('{"d_modle": 32}', "--config: unknown key(s) d_modle"),
                             ('{"n_blocks": 0}', "--config: n_blocks must be a positive integer, got 0"),
                             ('{"length": 4}', "--config: lookback 4 is shorter than the patch 8"),
                             ("{oops", "--config: malformed JSON"),
                             (str(tmp_path / "none.json"), "none.json: cannot read the --config file")):
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
    res = normalize_state_dict({"model.layers_0.mixer.in_proj_x.weight": torch.ones(4, 4),
                                "model.layers_0.mixer.in_proj_z.weight": torch.zeros(4, 4, 1),
                                "layers.0.in_proj.bias": torch.arange(8.0), "final_norm.gamma": torch.ones(4),
                                "layers.0.mixer.D": torch.ones(4)}, target)
    assert res.errors() == [] and res.unused == ["layers.0.mixer.D"] and res.missing == []
    w = res.state_dict["blocks.0.in_proj.weight"]
    assert w.shape == (8, 4, 1) and w[:4].eq(1).all() and w[4:].eq(0).all()
    assert res.errors(strict=True) == ["--strict: 1 unused key(s): layers.0.mixer.D"]
    half = normalize_state_dict({"layers.0.in_proj_u.weight": torch.ones(4, 4)}, target)
    assert "blocks.0.in_proj.weight (the in_proj_z half; found only layers.0.in_proj_u.weight)" in half.errors()[0]
    assert canonical_key("module.blk3.conv1d.bias") == ("blocks.3.dwconv.bias", None)
    assert canonical_key("encoder.weight") is None and canonical_key("blocks.0.norm.bias") is None
