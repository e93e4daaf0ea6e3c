"""The sweep's space (cmamba_hls/sweep_space.py), Pareto marking (sweep_pareto.py) and the per-tensor
fractional-bit offsets it gives calibration (intsim/calibrate.py): pure functions, no Dask."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cmamba_hls.sweep_pareto import pareto_front
from cmamba_hls.sweep_space import (
    KNOB_NAMES,
    KNOBS,
    NOT_USED,
    SpaceError,
    canonical,
    expand,
    frac_offsets,
    parse_space,
    read_space_file,
)
from intsim import load_model
from intsim.calibrate import choose_int16_formats, collect_stats
from intsim.errors import CmambaError
from intsim.formats import FRAC_MAX


def test_knobs_cover_what_calibrate_and_estimate_offer():
    from codegen.estimate import PARTS
    from intsim.calibrate import FORMAT_CHOICES, INT8_METHODS, METHODS
    from intsim.formats import RMSNORM_MODES

    space = parse_space(
        {
            "formats": list(FORMAT_CHOICES),
            "method": list(METHODS),
            "int8_method": list(INT8_METHODS),
            "int8_rmsnorm": list(RMSNORM_MODES),
            "part": list(PARTS),
            "precision": ["int16", "int8"],
            "interface": ["memory", "stream"],
            "reuse": ["natural", 8],
            "clock_mhz": [250, 300.5],
        }
    )
    assert space["reuse"] == ["natural", "8"] and space["clock_mhz"] == ["250.0", "300.5"]
    assert {k.name for k in KNOBS} >= {"frac_offset", "frac_offset_layer", "reuse_layer", "calib_windows"}


def test_points_are_canonical_and_distinct():
    space = parse_space(
        {
            "precision": ["int16", "int8"],
            "formats": ["q88", "auto"],
            "method": ["maxabs", "p99"],
            "int8_rmsnorm": ["v2", "v1"],
        }
    )
    points = expand(space)
    named = [dict(zip(KNOB_NAMES, p, strict=True)) for p in points]
    # int16: q88 ignores the method (1) + auto x 2 methods; int8: 2 methods (followed by int8_method) x 2 RMSNorms
    assert len(points) == 3 + 4 == len(set(points))
    assert all(p["int8_method"] == p["int8_rmsnorm"] == NOT_USED for p in named if p["precision"] == "int16")
    assert {(p["int8_method"], p["formats"]) for p in named if p["precision"] == "int8"} == {
        ("maxabs", NOT_USED),
        ("p99", NOT_USED),
    }
    assert (
        canonical({"precision": "int8", "method": "p99", "int8_method": "p99.9"})[KNOB_NAMES.index("int8_method")]
        == "p99.9"
    )


def test_random_samples_are_seeded_distinct_grid_points():
    space = parse_space(
        {"frac_offset": list(range(-3, 4)), "reuse": ["natural", 4, 8, 16], "interface": ["memory", "stream"]}
    )
    grid = expand(space)
    a, b, c = expand(space, 10, seed=1), expand(space, 10, seed=1), expand(space, 10, seed=2)
    assert a == b and a != c and len(set(a)) == 10 and set(a) <= set(grid)
    assert a == sorted(a, key=grid.index)
    assert expand(space, 1000, seed=0) == grid


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"colour": ["red"]}, ["unknown knob", "colour", "precision"]),
        ({"formats": ["q99"]}, ["formats", "q99", "q88, auto"]),
        ({"reuse": [0]}, ["reuse", "0"]),
        ({"frac_offset": [1.5]}, ["frac_offset"]),
        ({"clock_mhz": [-5]}, ["clock_mhz", "positive"]),
        ({"reuse_layer": ["head"]}, ["reuse_layer", "PATTERN=N"]),
        ({"precision": []}, ["precision", "empty"]),
        ({}, ["empty"]),
    ],
)
def test_bad_spaces_are_one_line_errors(raw, words):
    with pytest.raises(SpaceError) as exc:
        parse_space(raw)
    assert "\n" not in str(exc.value) and all(w in str(exc.value) for w in words), str(exc.value)


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("empty.yaml", "", ["empty"]),
        ("comments.yaml", "# nothing yet\n", ["empty"]),
        ("empty.json", "{}", ["empty"]),
        ("list.json", "[1, 2]", ["mapping"]),
        ("broken.json", "{", ["not valid JSON"]),
        ("broken.yaml", "a: [1,\n", ["not valid YAML"]),
    ],
)
def test_bad_space_files(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CmambaError) as exc:
        read_space_file(path)
    assert all(w in str(exc.value) for w in words), str(exc.value)


def test_yaml_and_json_spaces_are_the_same_space(tmp_path):
    (tmp_path / "s.yaml").write_text(
        "precision: [int16, int8]\nreuse: natural\nreuse_layer: ['', 'head=4,*.dwconv=2']\n"
    )
    (tmp_path / "s.json").write_text(
        '{"precision": ["int16", "int8"], "reuse": "natural", "reuse_layer": ["", {"head": 4, "*.dwconv": 2}]}'
    )
    a, b = (parse_space(read_space_file(tmp_path / n)) for n in ("s.yaml", "s.json"))
    assert a == b and a["reuse_layer"] == ["", "head=4,*.dwconv=2"]


def brute_force_front(points):
    return [not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points) for p in points]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=25))
def test_pareto_front_matches_the_definition(points):
    assert pareto_front([(float(a), float(b)) for a, b in points]) == brute_force_front(points)


def test_frac_offsets_move_formats_within_the_rules(tiny_model):
    model = load_model(tiny_model.graph.path)  # a copy: the fixture is shared
    x = np.random.default_rng(0).standard_normal((32,) + model.graph.input_shape)
    stats = collect_stats(model, x)
    base = choose_int16_formats(model, stats, "maxabs", "auto")["tensors"]
    offsets = frac_offsets(model.graph, "1", "blk0.*=-3")
    assert offsets["input"] == 1 and all(
        offsets.get(t, 0) == -2 for t in model.graph.tensor_names if t.startswith("blk0.")
    )
    moved = choose_int16_formats(model, stats, "maxabs", "auto", offsets)["tensors"]
    for layer in model.graph.layers:
        f = moved[layer.name]["frac_bits"]
        assert 0 <= f <= FRAC_MAX
        if layer.op == "sigmoid":
            assert f <= 14  # lam = 1.0 stays representable (spec 2.7)
        elif layer.name.startswith("blk0.") and base[layer.name]["frac_bits"] >= 2:
            assert f <= base[layer.name]["frac_bits"] - 2
    assert moved["input"]["frac_bits"] == min(FRAC_MAX, base["input"]["frac_bits"] + 1)
    model.graph.quant = {**model.graph.quant, "int16": {**model.graph.quant["int16"], "tensors": moved}}
    model.invalidate()
    _ = model.program  # still lowers: the accumulator rule holds


def test_every_combination_of_a_grid_is_kept_when_all_knobs_matter():
    space = parse_space({"frac_offset": [0, 1], "calib_windows": [8, 16], "part": ["xczu7ev", "xc7z020"]})
    assert len(expand(space)) == len(list(itertools.product(*space.values()))) == 8
