"""model.json against its JSON Schema (intsim/model.schema.json, shipped as package data).

`validate_model_json(raw, where)` raises ModelFormatError naming the file and the field
(`layers[2] 'blk0.in_proj_u': inputs[0]: [1] is not of type 'string'`) for any structure or
type the format does not allow, so the loader never meets a TypeError, AttributeError or
RecursionError on a parseable but malformed document. The schema fixes types and ranges of
every field the tool reads; cross-field rules (shapes against weights, names, known ops) stay
in intsim/graph.py, which runs after it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from intsim.errors import ModelFormatError

SCHEMA_FILE = "model.schema.json"
MAX_DEPTH = 32  # nesting levels of any JSON value (the format needs 7)


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    schema = json.loads(resources.files("intsim").joinpath(SCHEMA_FILE).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _depth_exceeds(value, limit: int) -> bool:
    """True when `value` nests deeper than `limit` containers (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def _field(raw, path) -> str:
    """`layer 'blk0.norm': layers[3].attrs.eps` from a jsonschema error path."""
    keys = list(path)
    text = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")
    if len(keys) >= 2 and keys[0] == "layers" and isinstance(keys[1], int):
        entry = raw["layers"][keys[1]]
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            text = f"layer '{entry['name']}': {text}"
    return text


def validate_model_json(raw: object, where: str) -> None:
    """ModelFormatError(f"{where}: {field}: {problem}") for the first (most relevant) error."""
    if _depth_exceeds(raw, MAX_DEPTH):
        raise ModelFormatError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(raw))
    if error is None:
        return
    field = _field(raw, error.absolute_path)
    if error.validator == "required":
        missing = next(
            (k for k in error.validator_value if not isinstance(error.instance, dict) or k not in error.instance), "?"
        )
        problem = f"missing key '{missing}'"
    else:
        problem = error.message
    raise ModelFormatError(f"{where}: {field + ': ' if field else ''}{problem}")
