"""Channel-independent graphs (model.json input.channel_independent, docs/model-format.md): the
layers describe one series; every channel of the window runs through them with the same weights.

- the loader's checks (schema type, the first layer's C_in, output channels, output shape);
- the semantics, in every mode: the output of channel c is the one-channel body run on channel c
  alone (a C_in = 1 channel-mixing copy of the same graph), bit for bit, saturations summed;
- golden model vs generated C++ (both precisions, per-layer checks on) and loop counts vs the
  estimate; the stream top refused with one line;
- the bit-true torch back end byte-equal; the float torch module equal to the float reference;
- `train --channels independent` -> calibrate -> eval on a tiny run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from codegen.build import run_testbench
from codegen.project import generate_project
from intsim import load_model
from intsim.errors import ModelFormatError, UnsupportedError
from intsim.graph import write_json_atomic
from intsim.modes import MODE_NAMES
from tests.conftest import make_calibrated
from tests.cpp_harness import build_project_cached

C, L = 3, 16


@pytest.fixture(scope="module")
def ci_model(tmp_path_factory):
    """1 block, C=3 series of L=16, RevIN in and out, calibrated (Q8.8, INT8 maxabs)."""
    return make_calibrated(tmp_path_factory.mktemp("ci") / "m", n_blocks=1, revin=True, channel_independent=True)


def _edit(src: Path, dst: Path, change) -> Path:
    shutil.copytree(src, dst)
    raw = json.loads((dst / "model.json").read_text())
    change(raw)
    write_json_atomic(dst / "model.json", raw)
    return dst


def _one_channel(raw: dict) -> None:
    """The same layers and quantization as a channel-mixing model of one channel."""
    del raw["input"]["channel_independent"]
    for side in ("input", "output"):
        raw[side]["channels"] = 1
        raw[side]["columns"] = raw[side]["columns"][:1]
        for key in ("mean", "std"):
            raw["normalization"][side][key] = raw["normalization"][side][key][:1]


def test_graph_shapes(ci_model):
    g = ci_model.graph
    assert g.channel_independent and g.series == C
    assert g.input_shape == (C, L) and g.body_input_shape == (1, L) and g.tensor_shape("input") == (1, L)
    assert g.layer("patch_embed").weights["weight"].shape[1] == 1
    assert g.layer(g.output_tensor).shape == (g.horizon, 1)
    assert g.fold(np.zeros((5, C, L))).shape == (5 * C, 1, L)
    from cmamba_hls.info_cli import describe

    assert f"channel-independent: the layers see one series [1, {L}]" in describe(g)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["input"].update(channel_independent="yes"), "'yes' is not of type 'boolean'"),
        (lambda r: r["output"].update(channels=2, columns=["a", "b"]), "output.channels 2 must equal input.channels 3"),
        (lambda r: r["output"].update(tensor="norm_f"), "expected (4, 1), one series' forecast"),
    ],
)
def test_loader_refuses_inconsistent_channel_independent_graphs(ci_model, tmp_path, change, message):
    bad = _edit(ci_model.graph.path, tmp_path / "bad", change)
    with pytest.raises(ModelFormatError) as exc:
        load_model(bad)
    assert message in str(exc.value)


def test_mixing_weights_in_a_channel_independent_graph_name_the_field(tmp_path):
    """A channel-mixing graph (patch_embed C_in = 3) marked channel-independent: one error naming it."""
    make_calibrated(tmp_path / "mix", n_blocks=1, n_cal=8)
    bad = _edit(tmp_path / "mix", tmp_path / "bad", lambda r: r["input"].update(channel_independent=True))
    with pytest.raises(ModelFormatError, match=r"patch_embed.*input.channel_independent is true.*\[1, 16\]"):
        load_model(bad)


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_each_channel_is_the_body_run_alone(ci_model, tmp_path, mode):
    body = load_model(_edit(ci_model.graph.path, tmp_path / "body", _one_channel))
    assert body.graph.input_shape == (1, L) and not body.graph.channel_independent
    x = np.random.default_rng(3).standard_normal((40, C, L)) * 2.0
    res = ci_model.run(x, mode, capture=True)
    assert res.output.shape == (40, C, ci_model.graph.horizon)
    sats = {}
    for c in range(C):
        alone = body.run(x[:, c : c + 1], mode, capture=True)
        assert np.array_equal(res.output[:, c], alone.output[:, 0]), (mode, c)
        if res.output_q is not None:
            assert np.array_equal(res.output_q[:, c], alone.output_q[:, 0])
        for name, t in alone.tensors.items():  # captured per series: row b*C + c
            assert np.array_equal(res.tensors[name][c::C], t), (mode, name)
        for name, st in alone.stats.items():
            sats[name] = sats.get(name, 0) + st["saturations"]
    assert {k: v["saturations"] for k, v in res.stats.items()} == sats


@pytest.mark.parametrize("precision, weights", [("int16", "embedded"), ("int8", "embedded"), ("int8", "external")])
def test_cpp_bit_exact_with_per_layer_checks(ci_model, tmp_path, precision, weights):
    gen = generate_project(ci_model, tmp_path / "p", precision=precision, n_vectors=60, layers=True, weights=weights)
    top = (gen.out_dir / "firmware" / "top.cpp").read_text()
    assert "for (int c = 0; c < SERIES; c++)" in top and "cmamba_forward(&input[c], act" in top
    build_project_cached(gen.out_dir)
    tb = run_testbench(gen.out_dir)
    assert (tb.passed, tb.failed) == (60, 0), tb.stdout
    assert "per-layer checks: on" in tb.stdout
    layer = np.load(gen.out_dir / "tb_data" / "layers" / "l_patch_embed.npy")
    assert layer.shape[0] == 60 * C  # one row per series
    if weights == "embedded":  # the series loop passes the synthesizability checks (docs/hls.md)
        from codegen.synth_check import check_project

        assert check_project(gen.out_dir).findings == []


@pytest.mark.parametrize("precision", ["int16", "int8"])
def test_loop_counts_equal_the_estimate(ci_model, tmp_path, precision):
    from codegen.estimate import estimate
    from codegen.reuse import ReuseSpec
    from tests.test_estimate import assert_counts_match, counted_run

    tb, counts, est = counted_run(ci_model, tmp_path / "p", precision, "memory", ReuseSpec(), 8)
    assert (tb.passed, tb.failed) == (8, 0), tb.stdout
    assert_counts_match(counts, est, precision)
    # C sequential body passes: every layer's cycles C times one pass; resources of one body
    body = load_model(_edit(ci_model.graph.path, tmp_path / "body", _one_channel))
    one = estimate(body.graph, precision)
    assert [s.cycles for s in est.stages] == [C * s.cycles for s in one.stages]
    assert [s.dsp for s in est.stages] == [s.dsp for s in one.stages]
    assert [s.rom_bits for s in est.stages] == [s.rom_bits for s in one.stages]
    from cmamba_hls.estimate_cli import summary

    assert f"the layers run {C} times per window" in "\n".join(summary(est))


def test_stream_top_is_refused(ci_model, tmp_path):
    from codegen.estimate import estimate

    with pytest.raises(UnsupportedError, match="channel-independent.*--interface stream is not supported"):
        generate_project(ci_model, tmp_path / "s", interface="stream", n_vectors=4)
    with pytest.raises(UnsupportedError, match="channel-independent"):
        estimate(ci_model.graph, interface="stream")


@pytest.mark.parametrize("mode", ["bittrue", "quant8"])
def test_torch_backend_byte_equal(ci_model, mode):
    pytest.importorskip("torch", reason="the 'train' extra (torch) is not installed")
    from model.torch_backend import TorchRunner
    from tests.test_torch_backend import assert_same_run, stress_inputs

    x = stress_inputs(ci_model, 24, seed=5)
    golden = ci_model.run(x, mode, capture=True)
    assert_same_run(golden, ci_model.run(x, mode, capture=True, backend="torch"))
    assert_same_run(golden, TorchRunner(ci_model, chunk=7).run(x, mode, capture=True))  # chunks of 2 windows


def test_import_paths(tmp_path, capsys):
    """`import --config` takes channel_independent (fp32 of the import == the module); `import-module`
    refuses the fold of channels into the batch with one line naming both ways in."""
    torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is not installed")
    from cmamba_hls.cli import main as cli_main
    from model.frontend import FrontendError, trace_module
    from tests.torch_models import TINY_REVIN_DIMS, tiny_revin_cmamba

    module = tiny_revin_cmamba(0, revin=False, channel_independent=True)
    with pytest.raises(FrontendError, match=r"channels folded into the batch.*train --channels independent"):
        trace_module(module, torch.randn(2, C, L))
    ckpt = tmp_path / "ci.pt"
    torch.save(module.state_dict(), ckpt)
    dims = {k: v for k, v in TINY_REVIN_DIMS.items() if k != "revin"}
    assert (
        cli_main(
            [
                "import",
                str(ckpt),
                "--config",
                json.dumps({**dims, "channel_independent": "yes"}),
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )
    assert "channel_independent must be true or false, got 'yes'" in capsys.readouterr().err
    assert (
        cli_main(
            [
                "import",
                str(ckpt),
                "--config",
                json.dumps({**dims, "channel_independent": True}),
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    model = load_model(tmp_path / "m")
    assert model.graph.channel_independent
    x = np.random.default_rng(0).standard_normal((4, C, L))
    with torch.no_grad():
        y = module(torch.from_numpy(x).float()).double().numpy()
    assert np.max(np.abs(model.run(x, "fp32").output - y)) < 1e-5


def test_channel_mixing_model_is_unchanged(tiny_model, tmp_path):
    """Absent flag: the channel-mixing graph, whose generated C++ has no series loop at all."""
    g = tiny_model.graph
    assert not g.channel_independent and g.series == 1 and g.body_input_shape == g.input_shape
    x = np.zeros((2,) + g.input_shape)
    assert g.fold(x).shape == x.shape
    gen = generate_project(tiny_model, tmp_path / "p", n_vectors=4, layers=False)
    texts = [p.read_text() for d in ("firmware", "tb") for p in (gen.out_dir / d).rglob("*.*")]
    assert texts and not any("SERIES" in t or "BODY_C" in t for t in texts)


def test_chunks_hold_series_and_give_the_same_bits(ci_model, chunked):
    """A chunk holds CHUNK_WINDOWS series (CHUNK_WINDOWS // C windows): the same bytes, stats and
    captured [B*C, ...] tensors as one call."""
    x = np.random.default_rng(4).standard_normal((11, C, L)) * 3.0
    whole = {mode: ci_model.run(x, mode, capture=True) for mode in ("fp32", "bittrue", "quant8")}
    calls = chunked(ci_model, 7)  # 7 // 3 = 2 windows per chunk
    for mode, ref in whole.items():
        calls.clear()
        res = ci_model.run(x, mode, capture=True)
        assert calls == [2, 2, 2, 2, 2, 1], mode
        assert res.output.tobytes() == ref.output.tobytes() and res.stats == ref.stats, mode
        for name, value in ref.tensors.items():
            assert value.shape[0] == 11 * C and res.tensors[name].tobytes() == value.tobytes(), (mode, name)
