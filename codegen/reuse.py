"""Reuse factors: how many multiplies share one multiplier, per layer (like hls4ml's ReuseFactor).

A layer with a parallelism knob (its estimator row's `knob`, codegen/estimate.py) has one loop
of E iterations, each doing N multiplies (convolutions: E output channels x N = C_in K multiplies
per position; dwconv: E = L positions x N = K taps per channel; rmsnorm: E = D channels x 1 per
token). Its reuse factor R is the number of cycles in which those E N multiplies are done, on
E N / R multipliers. The templates express it with two fields of the layer's config (PAR, II):

  R divides E:                PAR = E / R lanes (unrolled copies of the body), II = 1
  R = E d with d dividing N:  PAR = 1, II = d (the N multiplies of one iteration share N / d multipliers)

Any other R is invalid for that layer. The natural factor R = E (PAR = 1, II = 1) is what the
templates did before the knob existed, and is the default. The arithmetic never changes: only
how many copies of the same integer operations run side by side, and the pragmas.

Choosing factors (`ReuseSpec`, CLI `--reuse N` and `--reuse-layer PATTERN=N`):
  - `--reuse N` (global): every knob layer takes the LARGEST valid factor <= N (R = 1 is always
    valid, so there is one); `rounded(plans, spec)` lists the layers whose factor differs from N
    (codegen and estimate print them).
  - `--reuse-layer PATTERN=N` (repeatable, later ones win): the layers whose name matches the
    shell-style PATTERN (fnmatch: `blk0.dwconv`, `*.dwconv`, `*norm*`) take exactly N; a factor
    invalid for a matched layer, a pattern matching no layer, or a matched layer without a knob
    is an error (one line, listing the valid factors).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from intsim.errors import CmambaError

if TYPE_CHECKING:
    from codegen.emission import Emission
    from codegen.estimate import Knob
    from intsim.graph import Graph, Layer


class ReuseError(CmambaError):
    """An invalid reuse factor or --reuse-layer argument."""


@dataclass(frozen=True)
class Plan:
    """A layer's parallelism: its reuse factor (None: the layer has no knob), lanes and II."""

    reuse: int | None = None
    lanes: int = 1
    ii: int = 1

    def fields(self) -> list[tuple[str, int]]:
        """The config fields the templates read (par_of<CFG>); none for a layer without a knob."""
        return [] if self.reuse is None else [("REUSE", self.reuse), ("PAR", self.lanes), ("II", self.ii)]


@dataclass(frozen=True)
class ReuseSpec:
    default: int | None = None  # --reuse N (None: natural factors)
    layers: tuple[tuple[str, int], ...] = field(default=())  # --reuse-layer PATTERN=N, in order

    def as_json(self) -> dict:
        return {"default": self.default, "layers": [[p, r] for p, r in self.layers]}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def valid_factors(extent: int, body: int) -> list[int]:
    """Every valid reuse factor of a knob (E, N), ascending."""
    return sorted({extent // d for d in _divisors(extent)} | {extent * d for d in _divisors(body)})


def plan_for(extent: int, body: int, reuse: int) -> Plan | None:
    """The (lanes, II) that realise `reuse` on a knob (E, N); None when it is not valid."""
    if reuse >= 1 and extent % reuse == 0:
        return Plan(reuse, extent // reuse, 1)
    if reuse % extent == 0 and body % (reuse // extent) == 0:
        return Plan(reuse, 1, reuse // extent)
    return None


def check_factor(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ReuseError(f"{what}: a reuse factor is a positive integer, got {value!r}")
    return value


def parse_reuse_layer(text: str) -> tuple[str, int]:
    """'PATTERN=N' -> (PATTERN, N); one clear error line otherwise."""
    pattern, sep, value = str(text).rpartition("=")
    if not sep or not pattern:
        raise ReuseError(f"--reuse-layer {text!r}: expected NAME=N (NAME a layer name or a pattern such as '*.dwconv')")
    try:
        factor = int(value)
    except ValueError:
        raise ReuseError(f"--reuse-layer {text!r}: {value!r} is not an integer") from None
    return pattern, check_factor(factor, f"--reuse-layer {text}")


def knob_of(graph: Graph, layer: Layer) -> Knob | None:
    """The estimator row's knob of a layer (codegen/estimate.py), or None."""
    from codegen.estimate import ESTIMATE, dims_of

    return ESTIMATE.row(layer.op, layer.name).knob(dims_of(graph, layer))


def resolve_reuse(graph: Graph, spec: ReuseSpec) -> dict[str, Plan]:
    """Layer name -> Plan for every layer (module docstring); ReuseError on an invalid request."""
    if spec.default is not None:
        check_factor(spec.default, "--reuse")
    plans: dict[str, Plan] = {}
    knobs = {}
    for layer in graph.layers:
        knob = knob_of(graph, layer)
        knobs[layer.name] = knob
        if knob is None:
            plans[layer.name] = Plan()
        elif spec.default is None:
            plans[layer.name] = plan_for(knob.extent, knob.body, knob.extent)
        else:
            best = max(r for r in valid_factors(knob.extent, knob.body) if r <= spec.default)  # 1 is valid
            plans[layer.name] = plan_for(knob.extent, knob.body, best)
    for pattern, factor in spec.layers:
        check_factor(factor, f"--reuse-layer {pattern}={factor}")
        matched = [layer for layer in graph.layers if fnmatch.fnmatchcase(layer.name, pattern)]
        if not matched:
            raise ReuseError(
                f"--reuse-layer {pattern}={factor}: no layer matches '{pattern}' "
                f"(layers: {', '.join(layer.name for layer in graph.layers)})"
            )
        for layer in matched:
            knob = knobs[layer.name]
            if knob is None:
                raise ReuseError(
                    f"--reuse-layer {pattern}={factor}: layer '{layer.name}' ({layer.op}) has no reuse "
                    f"factor: it processes one element per cycle"
                )
            plan = plan_for(knob.extent, knob.body, factor)
            if plan is None:
                raise ReuseError(
                    f"--reuse-layer {pattern}={factor}: {factor} is not a valid reuse factor of layer "
                    f"'{layer.name}' ({layer.op}, {knob.what}): valid "
                    f"{', '.join(map(str, valid_factors(knob.extent, knob.body)))}"
                )
            plans[layer.name] = plan
    return plans


def apply_plans(em: Emission, names: dict[str, str], plans: dict[str, Plan]) -> None:
    """Append each knob layer's REUSE, PAR and II to its config (params.h), in place."""
    by_cfg = {f"cfg_{names[layer]}": plan for layer, plan in plans.items()}
    for cfg in em.configs:
        plan = by_cfg.get(cfg.cname)
        if plan is not None and plan.reuse is not None:
            cfg.ints = list(cfg.ints) + plan.fields()
            cfg.comment += f"; reuse {plan.reuse}: {plan.lanes} lane(s), II {plan.ii}"


def rounded(plans: dict[str, Plan], spec: ReuseSpec) -> str:
    """'layer R, ...' for the knob layers whose factor is not the global --reuse N ('' if none)."""
    if spec.default is None:
        return ""
    return ", ".join(f"{name} {p.reuse}" for name, p in plans.items() if p.reuse not in (None, spec.default))
