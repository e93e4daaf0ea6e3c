"""Model directory loader: round trip and every rejection names what is wrong."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from intsim import load_model
from intsim.errors import ModelFormatError
from intsim.graph import load_graph
from intsim.synth import make_random_model


@pytest.fixture()
def model_dir(tmp_path):
    return make_random_model(tmp_path / "m", n_blocks=2)


def edit_json(model_dir, edit):
    path = model_dir / "model.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))


def test_round_trip_shapes_and_weights(model_dir):
    g = load_graph(model_dir)
    assert g.input_shape == (3, 16)
    assert [l.name for l in g.layers][:3] == ["patch_embed", "blk0.norm", "blk0.in_proj_u"]
    assert g.layer("patch_embed").shape == (8, 4)
    assert g.layer("head").shape == (3 * 4, 1)
    w = np.load(model_dir / "weights" / "blk1.dt_proj.weight.npy")
    np.testing.assert_array_equal(g.layer("blk1.dt_proj").weights["weight"], w.astype(np.float64))
    assert g.n_weights() == sum(np.load(p).size for p in (model_dir / "weights").glob("*.npy"))


def test_quant_saved_and_reloaded(model_dir):
    from intsim.calibrate import calibrate
    model = load_model(model_dir)
    calibrate(model, np.zeros((4, 3, 16)) + 0.5, formats="auto")
    again = load_graph(model_dir)
    assert again.quant["int16"]["tensors"] == model.graph.quant["int16"]["tensors"]
    assert not list(model_dir.glob(".tmp-*"))          # nothing half-written left behind


@pytest.mark.parametrize("edit,match", [
    (lambda r: r.update(format_version=2), "format_version 2 is not supported"),
    (lambda r: r.update(format="onnx"), "'format' must be"),
    (lambda r: r["layers"][3].update(op="conv2d"), "unknown op 'conv2d'"),
    (lambda r: r["layers"][3].update(name="x;system(\"rm\")"), "bad name"),
    (lambda r: r["layers"][3].update(name="input"), "bad name"),
    (lambda r: r["layers"][3].update(name="1abc"), "bad name"),
    (lambda r: r["layers"][3].update(name="blk0.norm"), "duplicate name"),
    (lambda r: r["layers"][3].update(inputs=["nowhere"]), "input 'nowhere'"),
    (lambda r: r["layers"][3].update(inputs=["blk0.norm", "blk0.norm"]), "takes 1 input"),
    (lambda r: r["layers"][0]["attrs"].update(stride=0), "stride must be a positive integer"),
    (lambda r: r["layers"][0]["attrs"].update(kernel=True), "kernel"),
    (lambda r: r["layers"][1]["attrs"].update(eps=-1.0), "eps must be in"),
    (lambda r: r["layers"][0]["weights"].pop("bias"), "needs weights"),
    (lambda r: r["layers"][0]["weights"].update(bias="../../etc/passwd"), "must be relative"),
    (lambda r: r["layers"][0]["weights"].update(bias="weights/missing.npy"), "not found"),
    (lambda r: r["output"].update(horizon=5), "expected \\(3\\*5, 1\\)"),
    (lambda r: r["output"].update(tensor="blk0.norm"), "has shape"),
    (lambda r: r["normalization"]["input"].update(std=[1.0, 0.0, 1.0]), "std must be > 0"),
    (lambda r: r["normalization"]["input"].update(mean=[1.0, 2.0]), "expected 3 numbers"),
    (lambda r: r.pop("layers"), "missing key 'layers'"),
])
def test_rejections_name_the_problem(model_dir, edit, match):
    edit_json(model_dir, edit)
    with pytest.raises(ModelFormatError, match=match):
        load_graph(model_dir)


def test_malformed_json(model_dir):
    (model_dir / "model.json").write_text('{"format": "cmamba-hls-model", ')
    with pytest.raises(ModelFormatError, match="malformed JSON"):
        load_graph(model_dir)


def test_missing_directory(tmp_path):
    with pytest.raises(ModelFormatError, match="no model.json"):
        load_graph(tmp_path / "nope")


@pytest.mark.parametrize("array,match", [
    (np.zeros((8, 3, 5), np.float32), "does not match"),          # wrong kernel size
    (np.zeros((8, 3), np.float32), "expected 3 dimensions"),
    (np.zeros((8, 3, 4), np.int16), "dtype int16"),
    (np.full((8, 3, 4), np.nan, np.float32), "NaN"),
])
def test_bad_npy_rejected(model_dir, array, match):
    np.save(model_dir / "weights" / "patch_embed.weight.npy", array)
    with pytest.raises(ModelFormatError, match=match):
        load_graph(model_dir)


def test_pickled_npy_rejected(model_dir):
    np.save(model_dir / "weights" / "patch_embed.weight.npy",
            np.array([{"evil": pickle.dumps(1)}], dtype=object), allow_pickle=True)
    with pytest.raises(ModelFormatError, match="not a plain NPY"):
        load_graph(model_dir)
