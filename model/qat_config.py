"""QAT settings (no torch import: the command line reads the defaults; docs/qat.md)."""

from __future__ import annotations

from dataclasses import dataclass

TARGETS = ("fp32", "truth")
SCALE_LR_FACTOR = 100.0  # log step sizes (activation scales, weight steps): lr x 100
ZERO_LR_FACTOR = 1000.0  # zero points, in int8 codes: lr x 1000


@dataclass
class QATConfig:
    """`cmamba-hls qat` options (model/qat_train.py `finetune`)."""

    precision: str = "int8"
    epochs: int = 8
    lr: float = 5e-5
    batch_size: int = 128
    train_stride: int = 2  # each epoch uses every 2nd training window (offset by epoch: all are used)
    patience: int = 3
    seed: int = 0
    threads: int = 2
    target: str = "fp32"  # fp32: the float model's forecast (distillation) | truth: the data
    grad_clip: float = 1.0
