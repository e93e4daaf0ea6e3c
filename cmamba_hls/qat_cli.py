"""`cmamba-hls qat MODEL --data CSV --precision int8|int16 --out DIR`: quantization-aware
fine-tuning whose forward is the integer program itself (docs/qat.md), then an exported,
calibrated model directory whose quant parameters are the learned ones.

Imports torch only inside `run()`, so `cmamba-hls --help` works without the 'train' extra.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from cmamba_hls.cli_args import SPLIT_SIZES_HELP, check_choice
from cmamba_hls.texttable import text_table
from intsim.errors import CmambaError
from model.qat_config import SCALE_LR_FACTOR, TARGETS, ZERO_LR_FACTOR, QATConfig

PRECISIONS = ("int8", "int16")
D = QATConfig()  # the defaults
CALIBRATION_WINDOWS = 1024  # as `calibrate`: windows evenly spaced over the train split


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="calibrated model directory (`cmamba-hls calibrate`); read only")
    p.add_argument(
        "--data",
        metavar="CSV",
        help="CSV (.csv or .csv.gz) with the model's columns (default: the file named by the model's "
        "training record, looked up in the repository's data/ and beside the model)",
    )
    p.add_argument(
        "--split",
        metavar="SIZES",
        help=f"{SPLIT_SIZES_HELP} (default: the model's own): "
        f"train to fine-tune, val for early stopping, test for the report",
    )
    p.add_argument(
        "--precision",
        required=True,
        metavar="|".join(PRECISIONS),
        help="the integer program to train through: int8 (quant8) or int16 (bittrue)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="model directory to write (model.json + weights/)")
    p.add_argument("--epochs", type=int, default=D.epochs, help=f"max epochs (default {D.epochs})")
    p.add_argument(
        "--patience",
        type=int,
        default=D.patience,
        help=f"stop after this many epochs without a better validation loss (default {D.patience})",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=D.lr,
        help=f"Adam learning rate of the weights (default {D.lr:g}; log step sizes x{SCALE_LR_FACTOR:g}, "
        f"zero points x{ZERO_LR_FACTOR:g})",
    )
    p.add_argument("--batch-size", type=int, default=D.batch_size, help=f"default {D.batch_size}")
    p.add_argument(
        "--train-stride",
        type=int,
        default=D.train_stride,
        help=f"each epoch uses every N-th training window, offset by epoch (default {D.train_stride})",
    )
    p.add_argument(
        "--target",
        default=D.target,
        metavar="|".join(TARGETS),
        help="what the integer network is trained to output: fp32 = the float model's forecast "
        "(distillation, default) or truth = the data",
    )
    p.add_argument("--seed", type=int, default=D.seed, help=f"default {D.seed}")
    p.add_argument("--threads", type=int, default=D.threads, help=f"torch CPU threads (default {D.threads})")


def _splits(model, data, sizes) -> dict:
    """{"train", "val", "test"}: normalised (x, y) windows; plus "cal": calibration windows."""
    from cmamba_hls.evaluate import load_eval_data

    graph = model.graph
    out = {}
    for part, limit in (("train", None), ("val", None), ("test", None), ("cal", CALIBRATION_WINDOWS)):
        x, y = load_eval_data(model, data, "train" if part == "cal" else part, limit, sizes)
        out[part] = (model.normalize_input(x), (y - graph.norm_out_mean[:, None]) / graph.norm_out_std[:, None])
    return out


def _summary(model, net_before, net_after, splits) -> str:
    """val / test: MSE vs truth, MSE and MaxAE (output LSB) vs fp32, saturations: start vs QAT."""
    import numpy as np

    head = ("split", "model", "MSE vs truth", "MSE vs fp32", "MaxAE vs fp32 (LSB)", "saturations")
    rows = []
    for part in ("val", "test"):
        x, y = splits[part]
        ref = model.run(x, "fp32").output
        rows.append((part, "fp32", f"{np.mean((ref - y) ** 2):.6f}", "-", "-", "0"))
        for label, res in (("calibrated start", net_before.run(x)), ("QAT", net_after.run(x))):
            rows.append(
                (
                    part,
                    label,
                    f"{np.mean((res.output - y) ** 2):.6f}",
                    f"{np.mean((res.output - ref) ** 2):.3e}",
                    f"{np.max(np.abs(res.output - ref)) / res.output_lsb:.1f}",
                    str(sum(s["saturations"] for s in res.stats.values())),
                )
            )
    return text_table(head, rows, left_columns=(0, 1))


def run(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        raise CmambaError("qat needs the 'train' extra: pip install -e '.[train]'") from exc
    from intsim.data import parse_split
    from intsim.executor import load_model
    from model.export import check_output_dir
    from model.qat import QATNetwork
    from model.qat_train import export_qat, finetune

    check_choice("--precision", args.precision, PRECISIONS)
    check_choice("--target", args.target, TARGETS)
    cfg = QATConfig(
        precision=args.precision,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        train_stride=args.train_stride,
        patience=args.patience,
        seed=args.seed,
        threads=args.threads,
        target=args.target,
    )
    model_dir, out = Path(args.model), Path(args.out)
    model = load_model(model_dir)
    start = QATNetwork(model, args.precision)  # calibrated for this precision, and it lowers: else one error line
    check_output_dir(out)
    sizes = parse_split(args.split) if args.split else None
    splits = _splits(model, args.data, sizes)
    print(
        f"QAT of '{model.graph.name}' ({model_dir}) through the {args.precision} integer program; "
        f"windows train/val/test = {len(splits['train'][0])}/{len(splits['val'][0])}/{len(splits['test'][0])}; "
        f"target: {'the fp32 model' if args.target == 'fp32' else 'the data'}"
    )
    result = finetune(model, {k: splits[k] for k in ("train", "val")}, cfg)
    command = (
        "cmamba-hls " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if sys.argv and sys.argv[0].endswith("cmamba-hls")
        else None
    )
    export_qat(
        result,
        out,
        splits["cal"][0],
        splits["val"][0][:256],
        {"source_model": str(model_dir), "command": command or ""},
    )
    print(_summary(model, start, result.net, splits))
    print(
        f"wrote {out} (quant.{args.precision}: learned, best epoch {result.best_epoch}/{len(result.history)}; "
        f"{result.wall_time_s:.1f} s)"
    )
    return 0
