"""The sweep's design space: the knobs, the space file (YAML or JSON), and its points.

A space file maps knob names to one value or a list of values (docs/sweep.md):

    precision: [int16, int8]
    formats: [q88, auto]
    frac_offset: [-1, 0, 1]
    reuse: [natural, 32]

Every knob is one that `calibrate`, `estimate` / `codegen --reuse` or the model's formats
already offer (`KNOBS`, in CSV column order); a knob the file leaves out keeps its default (the
commands' defaults). `expand` returns the grid (every combination) or, with `samples`, that many
distinct grid points drawn with a seeded generator. Each point is canonical: a knob that cannot
change the result of its precision is written "-" (INT8 knobs in an INT16 point, INT16 formats in
an INT8 point, the range method with Q8.8 formats), and `int8_method` is resolved to the method
it follows, so points that would compute the same thing are one point.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from intsim.errors import CmambaError

if TYPE_CHECKING:
    from codegen.reuse import ReuseSpec
    from intsim.graph import Graph

NOT_USED = "-"  # a knob that does not apply to the point's precision
NATURAL = "natural"  # reuse: each layer's natural factor (estimate/codegen without --reuse)
SAME = "same"  # int8_method: follow `method` (calibrate without --int8-method)


class SpaceError(CmambaError):
    """An unusable space file: unknown knob or value, empty space, unreadable file."""


@dataclass(frozen=True)
class Knob:
    name: str
    default: str  # canonical text (the CSV cell)
    parse: Callable[[object], str]  # a space value -> canonical text; SpaceError when invalid
    applies: str  # "all", "int16" or "int8"
    help: str


def _choice(name: str, choices) -> Callable[[object], str]:
    def parse(value) -> str:
        text = str(value).strip() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
        if text not in choices:
            raise SpaceError(f"space: knob '{name}': unknown value {value!r} (known: {', '.join(choices)})")
        return text

    return parse


def _integer(name: str, low: int, high: int | None, special: tuple[str, ...] = ()) -> Callable[[object], str]:
    def parse(value) -> str:
        if isinstance(value, str) and value.strip() in special:
            return value.strip()
        try:
            number = int(value) if not isinstance(value, (bool, float)) else None
        except (TypeError, ValueError):
            number = None
        if number is None or number < low or (high is not None and number > high):
            bound = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
            extra = f" or {', '.join(special)}" if special else ""
            raise SpaceError(f"space: knob '{name}': unknown value {value!r} ({bound}{extra})")
        return str(number)

    return parse


def _positive_float(name: str) -> Callable[[object], str]:
    def parse(value) -> str:
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise SpaceError(f"space: knob '{name}': unknown value {value!r} (a positive number)")
        return repr(number)

    return parse


def _assignments(name: str) -> Callable[[object], str]:
    """One value: 'PATTERN=N' entries (a string with commas, a list of such strings or a mapping
    {PATTERN: N}) -> canonical 'P=N,P=N' ('' for none)."""

    def parse(value) -> str:
        if value is None or value == "":
            return ""
        if isinstance(value, dict):
            items = [f"{k}={v}" for k, v in value.items()]
        elif isinstance(value, str):
            items = [part for part in value.split(",") if part.strip()]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = list(value)
        else:
            raise SpaceError(f"space: knob '{name}': unknown value {value!r} (PATTERN=N entries)")
        out = []
        for item in items:
            pattern, sep, number = str(item).strip().rpartition("=")
            try:
                n = int(number)
            except ValueError:
                n = None
            if not sep or not pattern.strip() or n is None:
                raise SpaceError(f"space: knob '{name}': unknown value {item!r} (expected PATTERN=N, N an integer)")
            out.append(f"{pattern.strip()}={n}")
        return ",".join(out)

    return parse


def assignments(text: str) -> list[tuple[str, int]]:
    """The (pattern, N) pairs of a canonical 'P=N,P=N' cell."""
    pairs = []
    for item in filter(None, text.split(",")):
        pattern, _, number = item.rpartition("=")
        pairs.append((pattern, int(number)))
    return pairs


def _knobs() -> tuple[Knob, ...]:
    from cmamba_hls.calibrate_cli import DEFAULT_MAX_WINDOWS
    from codegen.estimate import PARTS
    from codegen.project import INTERFACES, PRECISIONS
    from intsim.calibrate import FORMAT_CHOICES, INT8_METHODS, METHODS
    from intsim.formats import FRAC_MAX, RMSNORM_MODES

    return (
        Knob(
            "precision",
            "int16",
            _choice("precision", PRECISIONS),
            "all",
            "integer back end: int16 (evaluated bittrue) or int8 (evaluated quant8)",
        ),
        Knob("formats", "q88", _choice("formats", FORMAT_CHOICES), "int16", "calibrate --formats"),
        Knob(
            "method",
            "maxabs",
            _choice("method", METHODS),
            "all",
            "calibrate --method: the range behind auto formats, and the INT8 range unless int8_method is set",
        ),
        Knob(
            "int8_method",
            SAME,
            _choice("int8_method", (SAME,) + INT8_METHODS),
            "int8",
            "calibrate --int8-method (same: follow method)",
        ),
        Knob("int8_rmsnorm", "v2", _choice("int8_rmsnorm", RMSNORM_MODES), "int8", "calibrate --int8-rmsnorm"),
        Knob(
            "frac_offset",
            "0",
            _integer("frac_offset", -FRAC_MAX, FRAC_MAX),
            "int16",
            "fractional bits added to every activation's INT16 format (kept in [0, 15])",
        ),
        Knob(
            "frac_offset_layer",
            "",
            _assignments("frac_offset_layer"),
            "int16",
            "PATTERN=K,...: K more fractional bits for the tensors matching PATTERN (added to frac_offset)",
        ),
        Knob(
            "calib_windows",
            str(DEFAULT_MAX_WINDOWS),
            _integer("calib_windows", 1, None),
            "all",
            "calibrate --max-windows: training windows the ranges are measured on",
        ),
        Knob("reuse", NATURAL, _integer("reuse", 1, None, (NATURAL,)), "all", "estimate/codegen --reuse"),
        Knob("reuse_layer", "", _assignments("reuse_layer"), "all", "estimate/codegen --reuse-layer NAME=N, ..."),
        Knob("interface", "memory", _choice("interface", INTERFACES), "all", "estimate/codegen --interface"),
        Knob("clock_mhz", "250.0", _positive_float("clock_mhz"), "all", "estimate --clock-mhz"),
        Knob("part", "xczu7ev", _choice("part", tuple(PARTS)), "all", "estimate --part"),
    )


KNOBS = _knobs()
KNOB_NAMES = tuple(k.name for k in KNOBS)
_BY_NAME = {k.name: k for k in KNOBS}


def read_space_file(path: Path) -> dict:
    """The space file's mapping (YAML for .yaml/.yml, JSON otherwise); SpaceError when unreadable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"space file {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        yaml = require_yaml()
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpaceError(f"space file {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    else:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise SpaceError(f"space file {path}: not valid JSON ({exc})") from None
    if raw is None or raw == {}:
        raise SpaceError(f"space file {path}: the space is empty (give at least one knob: {', '.join(KNOB_NAMES)})")
    if not isinstance(raw, dict):
        raise SpaceError(f"space file {path}: expected a mapping of knob -> value(s), got {type(raw).__name__}")
    return raw


def require_yaml() -> ModuleType:
    try:
        import yaml
    except ModuleNotFoundError:
        from cmamba_hls.sweep_runner import MISSING_EXTRA

        raise CmambaError(MISSING_EXTRA) from None
    return yaml


def parse_space(raw: dict) -> dict[str, list[str]]:
    """knob -> its canonical values, in file order, duplicates dropped; unknown knobs and values, and
    knobs without a value, are SpaceErrors."""
    if not raw:
        raise SpaceError(f"space: the space is empty (give at least one knob: {', '.join(KNOB_NAMES)})")
    space: dict[str, list[str]] = {}
    for name, values in raw.items():
        knob = _BY_NAME.get(name)
        if knob is None:
            raise SpaceError(f"space: unknown knob {name!r} (known: {', '.join(KNOB_NAMES)})")
        listed = values if isinstance(values, list) else [values]
        if not listed:
            raise SpaceError(f"space: knob '{name}' has no value (the space is empty)")
        space[name] = list(dict.fromkeys(knob.parse(v) for v in listed))
    return space


def canonical(values: dict[str, str]) -> tuple[str, ...]:
    """A point's knob values (every knob, KNOB_NAMES order) with unused knobs as NOT_USED."""
    v = {k.name: k.default for k in KNOBS} | values
    int16 = v["precision"] == "int16"
    if int16:
        v["int8_method"] = v["int8_rmsnorm"] = NOT_USED
        if v["formats"] == "q88":
            v["method"] = NOT_USED  # Q8.8 everywhere whatever the range
    else:
        v["int8_method"] = v["method"] if v["int8_method"] == SAME else v["int8_method"]
        v["method"] = v["formats"] = v["frac_offset"] = v["frac_offset_layer"] = NOT_USED
    return tuple(v[name] for name in KNOB_NAMES)


def expand(space: dict[str, list[str]], samples: int | None = None, seed: int = 0) -> list[tuple[str, ...]]:
    """The grid's distinct canonical points in grid order (the file's knob order, last knob fastest),
    or `samples` of them drawn without replacement by numpy's generator seeded with `seed` (kept in grid
    order; all of them when the grid is smaller)."""
    names = list(space)
    points = list(
        dict.fromkeys(
            canonical(dict(zip(names, combo, strict=True))) for combo in itertools.product(*(space[n] for n in names))
        )
    )
    if samples is not None and samples < len(points):
        picked = np.sort(np.random.default_rng(seed).choice(len(points), size=samples, replace=False))
        points = [points[int(i)] for i in picked]
    return points


def check_patterns(space: dict[str, list[str]], graph: Graph) -> None:
    """Every PATTERN of frac_offset_layer matches a tensor of `graph`, and every reuse/reuse_layer
    value is valid for it (codegen/reuse.py rules): a SpaceError naming the value otherwise."""
    from codegen.reuse import resolve_reuse

    for text in space.get("frac_offset_layer", ()):
        for pattern, _ in assignments(text):
            if not any(fnmatch.fnmatchcase(t, pattern) for t in graph.tensor_names):
                raise SpaceError(
                    f"space: knob 'frac_offset_layer': {pattern!r} matches no tensor of model "
                    f"'{graph.name}' (tensors: {', '.join(graph.tensor_names)})"
                )
    for reuse in space.get("reuse", (NATURAL,)):
        for text in space.get("reuse_layer", ("",)):
            try:
                resolve_reuse(graph, reuse_spec(reuse, text))
            except CmambaError as exc:
                raise SpaceError(f"space: knob 'reuse_layer' {text!r} on model '{graph.name}': {exc}") from None


def reuse_spec(reuse: str, reuse_layer: str) -> ReuseSpec:
    """The codegen.reuse.ReuseSpec of a point's reuse and reuse_layer cells."""
    from codegen.reuse import ReuseSpec

    return ReuseSpec(None if reuse == NATURAL else int(reuse), tuple(assignments(reuse_layer)))


def frac_offsets(graph: Graph, frac_offset: str, frac_offset_layer: str) -> dict[str, int]:
    """tensor -> fractional bits to add (calibrate's frac_offsets) of a point's two offset cells."""
    base = 0 if frac_offset == NOT_USED else int(frac_offset)
    out = dict.fromkeys(graph.tensor_names, base)
    for pattern, k in assignments("" if frac_offset_layer == NOT_USED else frac_offset_layer):
        for t in graph.tensor_names:
            if fnmatch.fnmatchcase(t, pattern):
                out[t] += k
    return {t: k for t, k in out.items() if k}
