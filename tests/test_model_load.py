"""model/load.py: an exported directory imported back into torch equals the fp32 reference."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is not installed")

from intsim import load_model  # noqa: E402
from model.load import load_torch_model  # noqa: E402

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "examples" / "default"


@pytest.mark.skipif(not (DEFAULT_MODEL / "model.json").is_file(), reason="default model not shipped yet")
def test_load_torch_model_matches_fp32_reference():
    module = load_torch_model(DEFAULT_MODEL)
    x = np.random.default_rng(0).standard_normal((16, 9, 64))
    with torch.no_grad():
        y_torch = module(torch.from_numpy(x.astype(np.float32))).numpy()
    y_ref = load_model(DEFAULT_MODEL).run(x, "fp32").output
    assert y_torch.shape == y_ref.shape == (16, 9, 16)
    assert np.max(np.abs(y_torch - y_ref)) < 1e-5


@pytest.mark.parametrize("key, value", [("d_model", 10**6), ("d_inner", 7), ("n_blocks", 4096), ("patch", 3)])
def test_hyper_sizes_are_checked_against_the_weights_before_allocating(tmp_path, key, value):
    import json
    import shutil

    from intsim.errors import ModelFormatError

    model_dir = shutil.copytree(DEFAULT_MODEL, tmp_path / "m")
    raw = json.loads((model_dir / "model.json").read_text())
    expected = raw["hyper"][key]
    raw["hyper"][key] = value
    (model_dir / "model.json").write_text(json.dumps(raw))
    with pytest.raises(
        ModelFormatError, match=f"hyper.{key} = {value} does not match the layer weights \\({expected}\\)"
    ):
        load_torch_model(model_dir)
    raw["hyper"].pop(key)
    (model_dir / "model.json").write_text(json.dumps(raw))
    with pytest.raises(ModelFormatError, match=f"'hyper' lacks '{key}'"):
        load_torch_model(model_dir)
