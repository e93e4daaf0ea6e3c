"""Layer names -> C/C++ identifiers (and file stems) for the generated project.

Rule (deterministic, order-independent):
  1. every run of characters outside [A-Za-z0-9] becomes one `_` (so `blk0.in_proj_u`
     -> `blk0_in_proj_u`; unicode, quotes, `;`, `(` ... can never reach the C++ text);
     leading/trailing `_` are dropped;
  2. the result is prefixed `l_` (`l_blk0_in_proj_u`): no identifier starts with a digit,
     none equals or shadows a C/C++ keyword or a name of the generated code (which never
     starts with `l_`), and with no `__` anywhere none is reserved by the C++ standard;
  3. identifiers are cut to MAX_LEN characters; when two different names would give the
     same identifier (`a.b` and `a_b`, or two long names sharing a prefix), each of them
     gets `_` + 8 hex digits of the SHA-256 of its original name.

A name is rejected (NameError_, a CmambaError) only when it is empty or has no letter or
digit at all: there is nothing meaningful to keep.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable

from intsim.errors import CmambaError

PREFIX = "l_"
MAX_LEN = 48
_RUN = re.compile(r"[^A-Za-z0-9]+")


class NameError_(CmambaError):
    """A layer name cannot be turned into a C identifier."""


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def base_identifier(name: str) -> str:
    """Steps 1-2 of the rule, without collision handling."""
    if not isinstance(name, str) or not name:
        raise NameError_(f"layer name {name!r}: empty names cannot become C identifiers")
    core = _RUN.sub("_", name).strip("_")
    if not core:
        raise NameError_(f"layer name {name!r} has no letter or digit to build a C identifier from")
    return (PREFIX + core)[:MAX_LEN]


def _hashed(name: str) -> str:
    stem = base_identifier(name)[: MAX_LEN - 9].rstrip("_")
    return f"{stem}_{_digest(name)}"


def sanitize_names(names: Iterable[str]) -> dict[str, str]:
    """Original names -> unique C identifiers (see the module docstring).

    Duplicate original names are an error (a graph never has them)."""
    names = list(names)
    dup = sorted(n for n, c in Counter(names).items() if c > 1)
    if dup:
        raise NameError_(f"duplicate layer name(s): {', '.join(map(repr, dup))}")
    base = {n: base_identifier(n) for n in names}
    counts = Counter(base.values())
    out = {n: (b if counts[b] == 1 else _hashed(n)) for n, b in base.items()}
    # A hashed identifier could, in theory, equal another name's plain one: refuse rather
    # than emit two definitions of one symbol.
    clash = sorted(i for i, c in Counter(out.values()).items() if c > 1)
    if clash:
        raise NameError_(f"layer names collide as C identifiers even after hashing: {', '.join(clash)}")
    return out
