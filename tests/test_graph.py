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
    assert [layer.name for layer in g.layers][:3] == ["patch_embed", "blk0.norm", "blk0.in_proj_u"]
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
    assert not list(model_dir.glob(".tmp-*"))  # nothing half-written left behind


@pytest.mark.parametrize(
    "edit,match",
    [
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
    ],
)
def test_rejections_name_the_problem(model_dir, edit, match):
    edit_json(model_dir, edit)
    with pytest.raises(ModelFormatError, match=match):
        load_graph(model_dir)


@pytest.mark.parametrize(
    "edit,match",
    [
        (
            lambda r: r["layers"][3].update(inputs=[[1]]),
            r"layer 'blk0.in_proj_z': layers\[3\].inputs\[0\]: \[1\] is not of type 'string'",
        ),
        (lambda r: r.update(training="abc"), r"training: 'abc' is not of type 'object'"),
        (lambda r: r.update(training={"data": {"file": 7}}), r"training.data.file: 7 is not of type 'string'"),
        (lambda r: r.update(training={"data": {"split": {"fractions": [0.7, 0.3]}}}), r"training.data.split.fractions"),
        (
            lambda r: r["layers"][0]["attrs"].update(kernel="8"),
            r"layers\[0\].attrs.kernel: '8' is not of type 'number'",
        ),
        (
            lambda r: r["layers"][0].update(weights=["weights/a.npy"]),
            r"layers\[0\].weights: \['weights/a.npy'\] is not of type",
        ),
        (lambda r: r["input"].update(channels=2**40), r"input.channels: 1099511627776 is greater than the maximum"),
        (
            lambda r: r["normalization"]["input"].update(mean="abc"),
            r"normalization.input.mean: 'abc' is not of type 'array'",
        ),
        (lambda r: r.update(layers={"patch_embed": {}}), r"layers: .* is not of type 'array'"),
        (
            lambda r: r.update(quant={"int8": {"tensors": {"input": {"scale": 0.1, "zero_point": 300}}}}),
            r"quant.int8.tensors.input.zero_point: 300 is greater than the maximum of 127",
        ),
        (
            lambda r: r.update(quant={"int16": {"tensors": {"input": {"frac_bits": 8.5}}}}),
            r"frac_bits: 8.5 is not of type 'integer'",
        ),
        (lambda r: r.update(hyper={"d_model": -3}), r"hyper.d_model: -3 is less than the minimum of 1"),
        (lambda r: r.update(training={"deep": json.loads("[" * 40 + "]" * 40)}), "nested deeper than 32 levels"),
    ],
)
def test_schema_rejections_name_file_and_field(model_dir, edit, match):
    edit_json(model_dir, edit)
    with pytest.raises(ModelFormatError, match=f"model.json: .*{match}"):
        load_graph(model_dir)


def test_json_nested_too_deeply_to_parse(model_dir):
    text = (model_dir / "model.json").read_text()
    (model_dir / "model.json").write_text(text[:-2] + ', "training": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(ModelFormatError, match="nested too deeply"):
        load_graph(model_dir)


def test_npy_declaring_terabytes_rejected_before_allocating(model_dir):
    path = model_dir / "weights" / "patch_embed.weight.npy"
    header = {"descr": "<f4", "fortran_order": False, "shape": (2**20, 2**20, 2**4)}  # 64 TiB
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 64)
    with pytest.raises(
        ModelFormatError,
        match=r"declares shape \(1048576, 1048576, 16\) of float32 "
        r"\(70,368,744,177,664 bytes\) but holds 64 bytes",
    ):
        load_graph(model_dir)
    np.save(path, np.zeros((8, 3, 4), np.float32))
    path.write_bytes(path.read_bytes()[:-4])  # truncated by 4 bytes
    with pytest.raises(ModelFormatError, match="holds 380 bytes"):
        load_graph(model_dir)


def test_the_schema_accepts_every_model_the_tool_writes(tiny_model_auto):
    from pathlib import Path

    from intsim.schema import validate_model_json

    for path in (tiny_model_auto.graph.path, Path(__file__).resolve().parent.parent / "examples" / "default"):
        validate_model_json(json.loads((Path(path) / "model.json").read_text()), str(path))


def test_malformed_json(model_dir):
    (model_dir / "model.json").write_text('{"format": "cmamba-hls-model", ')
    with pytest.raises(ModelFormatError, match="malformed JSON"):
        load_graph(model_dir)


def test_missing_directory(tmp_path):
    with pytest.raises(ModelFormatError, match="no model.json"):
        load_graph(tmp_path / "nope")


@pytest.mark.parametrize(
    "array,match",
    [
        (np.zeros((8, 3, 5), np.float32), "does not match"),  # wrong kernel size
        (np.zeros((8, 3), np.float32), "expected 3 dimensions"),
        (np.zeros((8, 3, 4), np.int16), "dtype int16"),
        (np.full((8, 3, 4), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_npy_rejected(model_dir, array, match):
    np.save(model_dir / "weights" / "patch_embed.weight.npy", array)
    with pytest.raises(ModelFormatError, match=match):
        load_graph(model_dir)


def test_pickled_npy_rejected(model_dir):
    np.save(
        model_dir / "weights" / "patch_embed.weight.npy",
        np.array([{"evil": pickle.dumps(1)}], dtype=object),
        allow_pickle=True,
    )
    with pytest.raises(ModelFormatError, match="not a plain NPY"):
        load_graph(model_dir)
