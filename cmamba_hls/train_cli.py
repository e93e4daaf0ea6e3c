"""`cmamba-hls train`: train CMamba-slim on a CSV and export a model directory.

Imports torch only inside `run()`, so `cmamba-hls --help` works without the
'train' extra.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from cmamba_hls.cli_args import SPLIT_SIZES_HELP
from intsim.data import parse_split
from intsim.errors import CmambaError

DEFAULT_EPOCHS = 60


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="CSV or CSV.gz with a header row")
    p.add_argument("--out", required=True, help="model directory to write (model.json + weights/)")
    p.add_argument(
        "--columns",
        default=None,
        help="comma-separated channel columns (default: every numeric column except timestamp / is_anomaly)",
    )
    p.add_argument("--lookback", type=int, default=64, help="input window L (default 64)")
    p.add_argument("--horizon", type=int, default=16, help="forecast steps H (default 16)")
    p.add_argument(
        "--split",
        default="0.7,0.1,0.2",
        metavar="SIZES",
        help=f"{SPLIT_SIZES_HELP} (default 0.7,0.1,0.2); calibrate and eval reuse it from model.json",
    )
    p.add_argument(
        "--train-stride", type=int, default=1, help="step between training windows (val/test always use 1; default 1)"
    )
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"max epochs (default {DEFAULT_EPOCHS})")
    p.add_argument(
        "--patience", type=int, default=15, help="stop after this many epochs without a better val MSE (default 15)"
    )
    p.add_argument("--batch-size", type=int, default=64, help="default 64")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    p.add_argument(
        "--weight-decay", type=float, default=1e-2, help="weight decay on conv weights (not biases/gains; default 1e-2)"
    )
    p.add_argument(
        "--optimizer",
        choices=("adamw", "adam"),
        default="adamw",
        help="adamw: decoupled decay; adam: L2 added to the gradient (default adamw)",
    )
    p.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="training-only dropout on block outputs and the head input (default 0)",
    )
    p.add_argument(
        "--lr-schedule",
        choices=("cosine", "constant"),
        default="cosine",
        help="cosine decay over --epochs, or constant (default cosine)",
    )
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    g = p.add_argument_group("network (docs/model.md)")
    g.add_argument("--patch", type=int, default=8, help="patch kernel P (default 8)")
    g.add_argument("--stride", type=int, default=4, help="patch stride S (default 4)")
    g.add_argument("--d-model", type=int, default=32, help="D (default 32)")
    g.add_argument("--d-inner", type=int, default=64, help="E (default 64)")
    g.add_argument("--n-blocks", type=int, default=2, help="N (default 2)")
    g.add_argument("--d-conv", type=int, default=4, help="depthwise conv kernel K (default 4)")
    g.add_argument(
        "--block",
        choices=("simple", "s6"),
        default="simple",
        help="block type: simple (one decay per channel) or s6 (Mamba-1 selective scan; default simple)",
    )
    g.add_argument("--d-state", type=int, default=16, help="S6: states per channel (default 16)")
    g.add_argument(
        "--dt-rank", type=int, default=None, help="S6: rank R of the step projection (default ceil(d_model / 16))"
    )
    g.add_argument(
        "--revin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="instance normalisation per window and channel in the graph: revin_norm before "
        "patch_embed, revin_denorm after the head (docs/model.md; default on, --no-revin: off)",
    )
    g.add_argument(
        "--revin-affine",
        action="store_true",
        help="a learned per-channel affine inside RevIN (one shared by every series with --channels independent; "
        "needs --revin); export folds it into "
        "patch_embed and the head, so the graph is unchanged (default off)",
    )
    g.add_argument(
        "--head-dim",
        type=int,
        default=8,
        help="width of a 1x1 conv D -> head-dim before the flatten head, which then holds "
        "C*H*head-dim*T weights instead of C*H*D*T (default 8; 0: no projection)",
    )
    g.add_argument(
        "--channels",
        choices=("mixing", "independent"),
        default="mixing",
        help="mixing: one network sees every channel of the window (patch_embed mixes them); independent: "
        "every channel is a series of its own through the same weights, as patch-based forecasters do "
        "(the graph describes one series: input.channel_independent, docs/model.md; default mixing)",
    )
    g.add_argument("--name", default="cmamba-slim", help="model name stored in model.json")
    p.add_argument("--verbose", action="store_true", help="one line per epoch")


def _check(args) -> None:
    positive = (
        "lookback",
        "horizon",
        "train_stride",
        "epochs",
        "patience",
        "batch_size",
        "threads",
        "patch",
        "stride",
        "d_model",
        "d_inner",
        "n_blocks",
        "d_conv",
        "d_state",
    )
    if args.dt_rank is not None and args.dt_rank <= 0:
        raise CmambaError(f"--dt-rank must be positive, got {args.dt_rank}")
    for key in positive:
        if getattr(args, key) <= 0:
            raise CmambaError(f"--{key.replace('_', '-')} must be positive, got {getattr(args, key)}")
    if args.head_dim < 0:
        raise CmambaError(f"--head-dim must be >= 0, got {args.head_dim}")
    if not args.lr > 0:
        raise CmambaError(f"--lr must be positive, got {args.lr}")
    if not 0 <= args.dropout < 1:
        raise CmambaError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.weight_decay < 0:
        raise CmambaError(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if args.patch > args.lookback:
        raise CmambaError(f"--patch {args.patch} is longer than --lookback {args.lookback}")
    ignored = (args.lookback - args.patch) % args.stride
    if ignored:  # the patches start at sample 0: the newest samples would never be read
        fit = args.lookback - ignored
        raise CmambaError(
            f"--lookback {args.lookback} with --patch {args.patch} --stride {args.stride}: the newest "
            f"{ignored} sample(s) of every window would never be used ((lookback - patch) must be a "
            f"multiple of stride); use --lookback {fit} or {fit + args.stride}"
        )
    parse_split(args.split)


def run(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        raise CmambaError(
            "training needs the 'train' extra (torch): make install-train, or pip install -e '.[train]'"
        ) from exc
    from model.train import TrainConfig, train

    _check(args)
    columns = None
    if args.columns:
        columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    command = (
        "cmamba-hls " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if sys.argv and sys.argv[0].endswith("cmamba-hls")
        else None
    )
    cfg = TrainConfig(
        data=args.data,
        out=args.out,
        columns=columns,
        lookback=args.lookback,
        horizon=args.horizon,
        split=args.split,
        train_stride=args.train_stride,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        dropout=args.dropout,
        patience=args.patience,
        lr_schedule=args.lr_schedule,
        seed=args.seed,
        threads=args.threads,
        patch=args.patch,
        stride=args.stride,
        d_model=args.d_model,
        d_inner=args.d_inner,
        n_blocks=args.n_blocks,
        d_conv=args.d_conv,
        block=args.block,
        d_state=args.d_state,
        dt_rank=args.dt_rank,
        revin=args.revin,
        head_dim=args.head_dim,
        revin_affine=args.revin_affine,
        channel_independent=args.channels == "independent",
        name=args.name,
        verbose=args.verbose,
        command=command or _reconstruct(args),
        extra={"command_full": _reconstruct(args)},
    )
    train(cfg)
    return 0


def _reconstruct(args) -> str:
    """The equivalent `cmamba-hls train` command line (when not run from the console script)."""
    parts = ["cmamba-hls", "train", "--data", args.data, "--out", args.out]
    if args.columns:
        parts += ["--columns", args.columns]
    for key in (
        "lookback",
        "horizon",
        "split",
        "train_stride",
        "epochs",
        "patience",
        "batch_size",
        "lr",
        "weight_decay",
        "optimizer",
        "dropout",
        "lr_schedule",
        "seed",
        "threads",
        "patch",
        "stride",
        "d_model",
        "d_inner",
        "n_blocks",
        "d_conv",
        "head_dim",
        "name",
    ):
        parts += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    if args.block == "s6":
        parts += ["--block", "s6", "--d-state", str(args.d_state)] + (
            ["--dt-rank", str(args.dt_rank)] if args.dt_rank is not None else []
        )
    parts.append("--revin" if args.revin else "--no-revin")
    if args.revin_affine:
        parts.append("--revin-affine")
    if args.channels != "mixing":
        parts += ["--channels", args.channels]
    return " ".join(shlex.quote(p) for p in parts)
