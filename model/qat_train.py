"""Fine-tune a calibrated model with QAT and export it (docs/qat.md; needs the 'train' extra).

`finetune(model, precision, data, cfg)` trains a `QATNetwork` (model/qat.py: the forward is
the integer program) with Adam on the MSE to a target (by default the float model's own
forecast: distillation, so the integer network learns to compute what the float one does; or
the data's ground truth), keeps the parameters of the best validation epoch (validation runs
the integer program) and starts from the calibrated parameters (epoch 0). An epoch is eligible
only if, on validation, its saturation count is no worse than the calibrated start's and its
largest error against the float model (MaxAE) is no worse at the output's resolution (at most one
output LSB of the start above it); the best eligible epoch by validation MSE is kept (epoch 0 is
always eligible).
`export_qat(result, out_dir, x_cal)` writes the model directory: the learned weights and
quantization parameters of the trained precision, the other precision calibrated afresh on the
new weights, checked bit for bit against the QAT network before it is moved into place.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from intsim import data as D
from intsim.calibrate import FORMAT_CHOICES, INT8_METHODS, METHODS, calibrate
from intsim.errors import CmambaError
from intsim.executor import Model, load_model
from model.export import check_output_dir, write_model_dir
from model.qat import QATNetwork
from model.qat_config import SCALE_LR_FACTOR, TARGETS, ZERO_LR_FACTOR, QATConfig
from model.train import set_determinism


@dataclass
class QATResult:
    net: QATNetwork
    config: QATConfig
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    start_val: float = math.nan  # validation loss of the calibrated start (epoch 0)
    best_val: float = math.nan
    start_maxae: float = math.nan  # validation MaxAE vs the float model, and saturations, of the start
    start_sats: int = 0
    wall_time_s: float = 0.0

    def record(self) -> dict:
        """The `training.qat` record of model.json."""
        return {
            "precision": self.net.precision,
            "config": asdict(self.config),
            "epochs_run": len(self.history),
            "best_epoch": self.best_epoch,
            "val_loss_start": self.start_val,
            "val_loss_best": self.best_val,
            "val_maxae_start": self.start_maxae,
            "val_saturations_start": self.start_sats,
            "wall_time_s": round(self.wall_time_s, 1),
            "history": self.history,
        }


def _optimizer(net: QATNetwork, lr: float) -> torch.optim.Optimizer:
    groups = [{"params": list(net.weights.values()), "lr": lr}]
    if net.precision == "int8":
        groups += [
            {"params": list(net.log_scale.values()) + list(net.log_step.values()), "lr": lr * SCALE_LR_FACTOR},
            {"params": list(net.zero.values()), "lr": lr * ZERO_LR_FACTOR},
        ]
    return torch.optim.Adam(groups)


def _check(cfg: QATConfig) -> None:
    for key in ("epochs", "batch_size", "patience", "threads", "train_stride"):
        if getattr(cfg, key) < 1:
            raise CmambaError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(cfg, key)}")
    if not cfg.lr > 0:
        raise CmambaError(f"--lr must be positive, got {cfg.lr}")
    if cfg.target not in TARGETS:
        raise CmambaError(f"unknown --target '{cfg.target}' (known: {', '.join(TARGETS)})")


def finetune(model: Model, data: dict, cfg: QATConfig, log: Callable[[str], None] = print) -> QATResult:
    """model: calibrated (its `cfg.precision` parameters are the start); data: {"train", "val"}:
    (x, y) normalised windows, float64 [N, C_in, L] and [N, C_out, H]."""
    _check(cfg)
    t0 = time.perf_counter()
    set_determinism(cfg.seed, cfg.threads)
    net = QATNetwork(model, cfg.precision)
    float_out = {k: model.run(x, "fp32").output for k, (x, y) in data.items()}
    targets = {k: (float_out[k] if cfg.target == "fp32" else y) for k, (x, y) in data.items()}
    x_all, t_all = data["train"][0], torch.as_tensor(targets["train"], dtype=torch.float32)

    def validate() -> tuple[float, float, int, float]:
        """(MSE to the target, MaxAE vs the float model, saturations, output LSB) of the integer program on val."""
        res = net.run(data["val"][0])
        sats = sum(s["saturations"] for s in res.stats.values())
        maxae = float(np.max(np.abs(res.output - float_out["val"])))
        return D.mse(res.output, targets["val"]), maxae, sats, float(res.output_lsb)

    result = QATResult(net, cfg)
    result.start_val, result.start_maxae, result.start_sats, start_lsb = validate()
    result.best_val = result.start_val
    best_state = copy.deepcopy(net.state_dict())
    log(
        f"epoch  0/{cfg.epochs}  (calibrated start)  val {result.start_val:.6f}  MaxAE {result.start_maxae:.4f}  "
        f"saturations {result.start_sats}"
    )
    opt = _optimizer(net, cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    bad = 0
    for epoch in range(1, cfg.epochs + 1):
        te = time.perf_counter()
        x_tr = x_all[(epoch - 1) % cfg.train_stride :: cfg.train_stride]
        t_tr = t_all[(epoch - 1) % cfg.train_stride :: cfg.train_stride]
        perm = torch.randperm(len(x_tr), generator=gen).numpy()
        total = 0.0
        for i in range(0, len(perm), cfg.batch_size):
            idx = np.sort(perm[i : i + cfg.batch_size])
            opt.zero_grad(set_to_none=True)
            y, _ = net(x_tr[idx])
            loss = torch.mean((y - t_tr[idx]) ** 2)
            if not torch.isfinite(loss):
                raise CmambaError(f"QAT diverged at epoch {epoch} (loss {loss.item()}); try a smaller --lr")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            net.constrain()
            total += loss.item() * len(idx)
        val, maxae, sats, _ = validate()
        eligible = maxae <= result.start_maxae + start_lsb and sats <= result.start_sats
        if eligible and val < result.best_val:
            result.best_val, result.best_epoch, bad = val, epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            bad += 1
        result.history.append(
            {
                "epoch": epoch,
                "train_loss": round(total / len(perm), 8),
                "val_loss": round(val, 8),
                "val_maxae": round(maxae, 6),
                "val_saturations": sats,
                "eligible": eligible,
            }
        )
        log(
            f"epoch {epoch:2d}/{cfg.epochs}  train {total / len(perm):.6f}  val {val:.6f}  MaxAE {maxae:.4f}  "
            f"saturations {sats}{'' if eligible else ' (worse than the start: not eligible)'}  "
            f"best {result.best_val:.6f} @ {result.best_epoch}  ({time.perf_counter() - te:.1f} s)"
        )
        if bad >= cfg.patience:
            break
    net.load_state_dict(best_state)
    result.wall_time_s = time.perf_counter() - t0
    return result


def _calibration_settings(quant: dict) -> dict:
    """The source model's calibration choices (method, formats, INT8 method and RMSNorm), for
    calibrating the precision QAT did not train on the new weights."""
    q16, q8 = quant.get("int16") or {}, quant.get("int8") or {}
    method = q16.get("method") if q16.get("method") in METHODS else "maxabs"
    return {
        "method": method,
        "formats": q16.get("formats") if q16.get("formats") in FORMAT_CHOICES else "q88",
        "int8_method": q8.get("method") if q8.get("method") in INT8_METHODS else method,
        "int8_rmsnorm": q8.get("rmsnorm") or "v2",
    }


def export_qat(
    result: QATResult, out_dir: str | Path, x_cal: np.ndarray, probe: np.ndarray, record: dict | None = None
) -> Path:
    """Write the QAT model to `out_dir` (model/export.py's writer: a temporary sibling renamed into
    place). quant.<precision> holds the learned parameters; the other precision is calibrated on
    `x_cal` (normalised windows) with the source model's settings. Before the directory is moved
    in, the golden model on it must reproduce the QAT network's integer output on `probe` bit for
    bit (else nothing is written)."""
    net = result.net
    check_output_dir(out_dir)
    graph = net.snapshot()
    other = Model(copy.copy(graph))
    calibrate(other, x_cal, save=False, **_calibration_settings(net.source_quant))
    quant = dict(other.graph.quant)
    quant[net.precision] = net.quant_block()
    weights = net.export_weights()
    raw = graph.raw
    layers = [({k: v for k, v in entry.items() if k != "weights"}, weights[entry["name"]]) for entry in raw["layers"]]
    training = dict(raw.get("training") or {})
    training["qat"] = dict(result.record(), **(record or {}))
    header = {k: v for k, v in raw.items() if k not in ("format", "format_version", "layers", "quant", "training")}
    header.update(training=training, quant=quant)
    expected = net.run(probe)

    def check(tmp: Path) -> None:
        got = load_model(tmp).run(probe, net.mode)
        if got.output_q.tobytes() != expected.output_q.tobytes():
            raise CmambaError(
                f"internal error: the exported model's {net.mode.name} output differs from the QAT "
                f"network's; nothing written"
            )

    return write_model_dir(out_dir, layers, header, check=check)
