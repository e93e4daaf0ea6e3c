"""Train CMamba-slim on a CSV and export a model directory (needs the 'train' extra).

Data: `intsim.data.load_splits` (chronological split, 70/10/20 % by default or `split`: fractions
or row counts; windows per split),
normalised with the train part's per-channel mean/std. Adam on MSE, early stopping
on the validation MSE (the best weights are kept), fixed seeds and deterministic
kernels. Test metrics are reported in normalised and original units next to two
numpy baselines fitted on the same train split (repeat-last, per-channel linear).
"""

from __future__ import annotations

import copy
import hashlib
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from intsim import data as D
from intsim.errors import CmambaError
from model.cmamba import CMambaSlim
from model.export import check_output_dir, export_model


@dataclass
class TrainConfig:
    data: str
    out: str
    columns: list[str] | None = None
    lookback: int = 64
    horizon: int = 16
    split: str = "0.7,0.1,0.2"  # fractions or row counts (intsim.data.parse_split)
    train_stride: int = 1
    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    optimizer: str = "adamw"  # adamw (decoupled decay) | adam (L2 in the gradient)
    dropout: float = 0.0
    patience: int = 15
    lr_schedule: str = "cosine"  # cosine | constant
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 2
    patch: int = 8
    stride: int = 4
    d_model: int = 32
    d_inner: int = 64
    n_blocks: int = 2
    d_conv: int = 4
    block: str = "simple"  # simple | s6 (Mamba-1 selective scan, docs/model.md)
    d_state: int = 16  # S6: N states per channel
    dt_rank: int | None = None  # S6: R (None: ceil(d_model / 16))
    eps: float = 1e-5
    revin: bool = True  # instance normalisation in the graph (revin_norm / revin_denorm)
    head_dim: int = 8  # > 0: a 1x1 conv D -> head_dim before the flatten head (0: none)
    revin_affine: bool = False  # learned per-channel affine inside RevIN (folded at export)
    channel_independent: bool = False  # every channel a series through shared weights (--channels independent)
    name: str = "cmamba-slim"
    max_weights: int | None = None  # refuse models larger than this (None: no limit)
    verbose: bool = False
    command: str | None = None
    extra: dict = field(default_factory=dict)


def set_determinism(seed: int, threads: int) -> None:
    torch.set_num_threads(max(1, int(threads)))
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)


def make_optimizer(module: CMambaSlim, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on conv weights only; biases and RMSNorm gains are not decayed
    (decaying the gains lets whole blocks collapse to zero); nor is an S6 block's A_log (as in Mamba)."""
    decay = [p for name, p in module.named_parameters() if p.ndim >= 2 and not name.endswith("A_log")]
    no_decay = [p for name, p in module.named_parameters() if p.ndim < 2 or name.endswith("A_log")]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    raise CmambaError(f"unknown optimizer '{cfg.optimizer}' (adamw | adam)")


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _metrics(pred_n, y_n, norm, y_raw) -> dict:
    pred_raw = D.denormalize(pred_n, norm)
    return {
        "mse": D.mse(pred_n, y_n),
        "mae": D.mae(pred_n, y_n),
        "mse_orig": D.mse(pred_raw, y_raw),
        "mae_orig": D.mae(pred_raw, y_raw),
    }


@torch.no_grad()
def predict(module: CMambaSlim, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    module.eval()
    outs = [
        module(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32))).double().numpy()
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outs, axis=0)


def train(cfg: TrainConfig) -> dict:
    """Train, evaluate and export. Returns the `training` record written to model.json."""
    t0 = time.perf_counter()
    check_output_dir(cfg.out)  # fail before training, not after
    set_determinism(cfg.seed, cfg.threads)
    split = D.parse_split(cfg.split)
    columns, ignored = D.column_choice(cfg.data, cfg.columns)
    print(
        f"data {Path(cfg.data).name}: {len(columns)} column(s): {', '.join(columns)}"
        + (f"; ignored: {', '.join(f'{k} ({why})' for k, why in ignored.items())}" if ignored else "")
    )
    splits = D.load_splits(
        cfg.data, cfg.columns, cfg.lookback, cfg.horizon, stride=1, fractions=split, train_stride=cfg.train_stride
    )
    columns = splits["columns"]
    rows = {k: len(splits["series"][k]) for k in D.SPLITS}
    unused = splits["n_rows"] - sum(rows.values())
    print(
        f"split {split.text()}: rows train/val/test = {rows['train']}/{rows['val']}/{rows['test']} "
        f"of {splits['n_rows']}" + (f" ({unused} rows after the test part unused)" if unused else "")
    )
    norm = D.fit_normalization(splits["series"]["train"])
    raw = {k: splits[k] for k in D.SPLITS}
    nx = {k: (D.normalize(raw[k][0], norm), D.normalize(raw[k][1], norm)) for k in D.SPLITS}

    c = len(columns)
    try:
        module = CMambaSlim(
            c_in=c,
            c_out=c,
            length=cfg.lookback,
            patch=cfg.patch,
            stride=cfg.stride,
            d_model=cfg.d_model,
            d_inner=cfg.d_inner,
            n_blocks=cfg.n_blocks,
            d_conv=cfg.d_conv,
            horizon=cfg.horizon,
            eps=cfg.eps,
            dropout=cfg.dropout,
            revin=cfg.revin,
            head_dim=cfg.head_dim,
            revin_affine=cfg.revin_affine,
            channel_independent=cfg.channel_independent,
            block=cfg.block,
            d_state=cfg.d_state,
            dt_rank=cfg.dt_rank,
        )
    except (ValueError, RuntimeError) as exc:
        raise CmambaError(f"bad model dimensions: {exc}") from exc
    n_weights = module.n_weights()
    if cfg.max_weights is not None and n_weights > cfg.max_weights:
        raise CmambaError(f"model has {n_weights} weights, more than --max-weights {cfg.max_weights}")
    s6 = f", S6 blocks: N={cfg.d_state} states, R={module.hyper['dt_rank']}" if cfg.block == "s6" else ""
    print(
        f"CMamba-slim: {n_weights} weights (C={c}, L={cfg.lookback}, P={cfg.patch}, S={cfg.stride}, "
        f"T={module.tokens}, D={cfg.d_model}, E={cfg.d_inner}, N={cfg.n_blocks}, K={cfg.d_conv}{s6}, "
        f"H={cfg.horizon}, head input {cfg.head_dim or cfg.d_model}, RevIN {'on' if cfg.revin else 'off'}, "
        f"channels {'independent' if cfg.channel_independent else 'mixing'}); "
        f"windows train/val/test = "
        f"{len(nx['train'][0])}/{len(nx['val'][0])}/{len(nx['test'][0])}"
    )

    # Baselines on the same split, fitted on train only.
    lin = D.LinearForecaster().fit(*nx["train"])
    baselines = {
        "repeat_last": {
            k: _metrics(D.repeat_last(nx[k][0], cfg.horizon), nx[k][1], norm, raw[k][1]) for k in ("val", "test")
        },
        "linear": {k: _metrics(lin.predict(nx[k][0]), nx[k][1], norm, raw[k][1]) for k in ("val", "test")},
    }

    x_tr = torch.from_numpy(nx["train"][0].astype(np.float32))
    y_tr = torch.from_numpy(nx["train"][1].astype(np.float32))
    opt = make_optimizer(module, cfg)
    steps_per_epoch = math.ceil(len(x_tr) / cfg.batch_size)
    if cfg.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * steps_per_epoch))
    elif cfg.lr_schedule == "constant":
        sched = None
    else:
        raise CmambaError(f"unknown lr schedule '{cfg.lr_schedule}' (cosine | constant)")
    gen = torch.Generator().manual_seed(cfg.seed)
    loss_fn = torch.nn.MSELoss()

    best = {"val_mse": math.inf, "epoch": -1, "state": copy.deepcopy(module.state_dict())}
    history = []
    bar = tqdm(range(cfg.epochs), desc="train", unit="epoch", disable=not sys.stderr.isatty(), file=sys.stderr)
    bad_epochs = 0
    for epoch in bar:
        module.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        total = 0.0
        for i in range(0, len(x_tr), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(module(x_tr[idx]), y_tr[idx])
            if not torch.isfinite(loss):
                raise CmambaError(f"training diverged at epoch {epoch + 1} (loss {loss.item()}); try a smaller --lr")
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item() * len(idx)
        train_mse = total / len(x_tr)
        val_mse = D.mse(predict(module, nx["val"][0]), nx["val"][1])
        history.append({"epoch": epoch + 1, "train_mse": round(train_mse, 6), "val_mse": round(val_mse, 6)})
        if val_mse < best["val_mse"]:
            best = {"val_mse": val_mse, "epoch": epoch + 1, "state": copy.deepcopy(module.state_dict())}
            bad_epochs = 0
        else:
            bad_epochs += 1
        bar.set_postfix(train=f"{train_mse:.4f}", val=f"{val_mse:.4f}", best=f"{best['val_mse']:.4f}")
        if cfg.verbose:
            print(
                f"epoch {epoch + 1:3d}  train {train_mse:.4f}  val {val_mse:.4f}  "
                f"best {best['val_mse']:.4f} @ {best['epoch']}",
                flush=True,
            )
        if bad_epochs >= cfg.patience:
            break
    bar.close()
    module.load_state_dict(best["state"])

    gains = module.block_gains(torch.from_numpy(nx["val"][0].astype(np.float32)))
    model_metrics = {k: _metrics(predict(module, nx[k][0]), nx[k][1], norm, raw[k][1]) for k in ("val", "test")}
    wall = time.perf_counter() - t0
    cfg_record = {k: v for k, v in asdict(cfg).items() if k not in ("command", "extra", "verbose", "out")}
    record = {
        "command": cfg.command or "",
        "seed": cfg.seed,
        "data": {
            "file": Path(cfg.data).name,
            "sha256": _sha256(cfg.data),
            "columns": columns,
            "split": split.record() | {"rows": rows, "windows": {k: len(nx[k][0]) for k in D.SPLITS}},
        },
        "config": cfg_record,
        "n_weights": n_weights,
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        # RMS(block update) / RMS(block input) on val: ~0 would mean a dead block.
        "block_gains": [round(g, 6) for g in gains],
        "wall_time_s": round(wall, 1),
        "environment": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
        },
        "metrics": {
            "test_mse": model_metrics["test"]["mse"],
            "test_mae": model_metrics["test"]["mae"],
            "test_mse_orig": model_metrics["test"]["mse_orig"],
            "test_mae_orig": model_metrics["test"]["mae_orig"],
            "val_mse": model_metrics["val"]["mse"],
            "model": model_metrics,
            "baselines": baselines,
        },
        "history": history,
        **cfg.extra,
    }
    export_model(module, cfg.out, norm, columns, record, name=cfg.name)
    print_report(record)
    print("block update RMS / input RMS (val): " + ", ".join(f"blk{i} {g:.3f}" for i, g in enumerate(gains)))
    if best["epoch"] == 1 and len(history) > 1:
        print(
            f"warning: the best validation epoch was the first of {len(history)}: the model overfits from the "
            f"start; try a smaller --lr, more --dropout or --weight-decay, or --revin",
            file=sys.stderr,
        )
    dead = [i for i, g in enumerate(gains) if g < 1e-3]
    if dead:
        print(
            f"warning: block(s) {dead} contribute almost nothing (weights decayed away?); try a smaller --weight-decay",
            file=sys.stderr,
        )
    print(f"wrote {cfg.out} ({n_weights} weights, best epoch {best['epoch']}/{len(history)}, {wall:.1f} s)")
    return record


def print_report(record: dict) -> None:
    m = record["metrics"]
    rows = [
        ("CMamba-slim", m["model"]["test"]),
        ("repeat-last", m["baselines"]["repeat_last"]["test"]),
        ("linear (per channel)", m["baselines"]["linear"]["test"]),
    ]
    print("test split               MSE (norm)  MAE (norm)   MSE (orig)  MAE (orig)")
    for name, r in rows:
        print(f"{name:<22} {r['mse']:11.4f} {r['mae']:11.4f} {r['mse_orig']:12.1f} {r['mae_orig']:11.2f}")
