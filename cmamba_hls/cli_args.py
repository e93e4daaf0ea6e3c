"""Argument helpers shared by the subcommands that read a data split (calibrate, eval)."""
from __future__ import annotations

from intsim.data import SPLITS
from intsim.errors import CmambaError


def add_data_arguments(p, default_split: str, split_purpose: str) -> None:
    """--data CSV and --split train|val|test, worded the same for every subcommand."""
    p.add_argument("--data", metavar="CSV",
                   help="CSV (.csv or .csv.gz) with the model's columns (default: the file named by the "
                        "model's training record, looked up in the repository's data/ and beside the model)")
    p.add_argument("--split", default=default_split, metavar="|".join(SPLITS),
                   help=f"chronological split to {split_purpose} (default {default_split})")


def check_choice(flag: str, value, choices) -> None:
    """One clear error line for a value outside `choices` (None means 'not given')."""
    if value is not None and value not in choices:
        raise CmambaError(f"unknown {flag} '{value}' (known: {', '.join(choices)})")
