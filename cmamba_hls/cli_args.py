"""Argument helpers shared by the subcommands that read data (train, calibrate, eval)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from intsim.data import SPLITS, Split, parse_split
from intsim.errors import CmambaError

SPLIT_SIZES_HELP = (
    "three fractions (0.7,0.1,0.2) or three row counts (8640,2880,2880) of the chronological train,val,test split"
)


def add_data_arguments(p: argparse.ArgumentParser, default_split: str, split_purpose: str) -> None:
    """--data CSV and --split, worded the same for every subcommand that reads a model's data."""
    p.add_argument(
        "--data",
        metavar="CSV",
        help="CSV (.csv or .csv.gz) with the model's columns (default: the file named by the "
        "model's training record, looked up in the repository's data/ and beside the model)",
    )
    p.add_argument(
        "--split",
        action="append",
        metavar="|".join(SPLITS) + "|SIZES",
        help=f"the part to {split_purpose} (default {default_split}), and/or the split sizes: "
        f"{SPLIT_SIZES_HELP} (default: the sizes the model was trained with); give "
        f"--split twice for both, e.g. --split test --split 0.6,0.2,0.2",
    )


def split_arguments(values: list[str] | None, default_part: str) -> tuple[str, Split | None]:
    """(part, sizes or None) from the --split values of add_data_arguments."""
    part, sizes = None, None
    for value in values or ():
        if value in SPLITS:
            if part is not None and part != value:
                raise CmambaError(f"--split given two parts ({part}, {value}): choose one")
            part = value
        elif "," in value:
            sizes = parse_split(value)
        else:
            raise CmambaError(f"unknown --split '{value}' (a part: {', '.join(SPLITS)}; or sizes: {SPLIT_SIZES_HELP})")
    return part or default_part, sizes


def check_choice(flag: str, value: str | None, choices: Iterable[str]) -> None:
    """One clear error line for a value outside `choices` (None means 'not given')."""
    if value is not None and value not in choices:
        raise CmambaError(f"unknown {flag} '{value}' (known: {', '.join(choices)})")
