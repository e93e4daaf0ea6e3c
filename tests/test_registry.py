"""The op registry (intsim/ops.py): every registered op has a row, or an explicit unsupported
row, in every back end; a missing row is a clear error naming the layer."""

from __future__ import annotations

import pytest

from codegen.emit_int8 import EMIT8, OP_TEMPLATES as TEMPLATES8
from codegen.emit_int16 import EMIT16, OP_TEMPLATES as TEMPLATES16
from codegen.estimate import ESTIMATE
from intsim import kernels_int8 as K8, kernels_int16 as K
from intsim.errors import UnsupportedError
from intsim.float_ref import FLOAT
from intsim.int8 import INT8
from intsim.int16 import INT16
from intsim.ops import OPS, BackendTable
from intsim.spec_kit import KIT8, KIT16

BACKENDS = [FLOAT, INT16, INT8, EMIT16, EMIT8, KIT16, KIT8, ESTIMATE]
try:  # the bit-true PyTorch back end (the 'train' extra, installed in CI)
    from model.qat_ops import SURROGATE
    from model.torch_int8 import TORCH8
    from model.torch_int16 import TORCH16

    BACKENDS += [TORCH16, TORCH8, SURROGATE]
except ModuleNotFoundError:  # a numpy-only install: the golden model needs no torch
    pass


@pytest.mark.parametrize("table", BACKENDS, ids=lambda t: t.name)
def test_every_registered_op_has_a_row_in_every_back_end(table):
    assert table.missing() == [], f"{table.name}: no row (or explicit unsupported row) for {table.missing()}"


def test_a_missing_row_fails_the_check_and_names_the_layer():
    table = BackendTable("test back end")
    table.register("mul", object())
    assert "add" in table.missing() and "mul" not in table.missing()
    with pytest.raises(UnsupportedError, match=r"layer 'blk0\.residual': op 'add' has no test back end row"):
        table.row("add", "blk0.residual")


def test_an_explicit_unsupported_row_raises_naming_the_layer_and_the_reason():
    table = BackendTable("test back end")
    table.unsupported("scan", "no recurrence in this estimator")
    assert "scan" not in table.missing() and "scan" not in table.supported()
    with pytest.raises(UnsupportedError, match=r"layer 'blk0\.scan'.*no recurrence in this estimator"):
        table.row("scan", "blk0.scan")


def test_rows_only_for_registered_ops_and_only_once():
    table = BackendTable("test back end")
    with pytest.raises(KeyError, match="instnorm"):
        table.register("instnorm", object())
    table.register("mul", object())
    with pytest.raises(KeyError, match="twice"):
        table.register("mul", object())


def test_every_int16_and_int8_row_packs_exactly_its_kernels_named_columns(tiny_model, tiny_s6_model):
    """The packed table's parameter columns are named per kernel; each op's row fills exactly those."""
    assert len({k.code for k in K.KERNELS}) == len(K.KERNELS)
    assert max(len(k.params) + len(k.extra_inputs) for k in K.KERNELS) <= K.N_PARAM_COLS
    ops = set()
    for st in tiny_model.program.steps + tiny_s6_model.program.steps:
        packed = INT16.row(st.op, st.name).pack(st.params)
        assert set(packed.values) == set(packed.kernel.params), st.name
        ops.add(st.op)
    assert ops == set(OPS)  # the two tiny models exercise every registered op
    assert len({k.code for k in K8.KERNELS8}) == len(K8.KERNELS8)
    assert max(len(k.params) for k in K8.KERNELS8) <= K.N_PARAM_COLS
    for st in tiny_model.program8.steps:  # a row without pack runs its program layer by layer
        pack = INT8.row(st.op, st.name).pack
        packed = pack(st.params) if pack is not None else None
        assert packed is None or set(packed.values) == set(packed.kernel.params), st.name


def test_the_template_lists_come_from_the_rows():
    assert TEMPLATES16 == list(dict.fromkeys(row.template for _, row in EMIT16.rows()))
    assert TEMPLATES8[1:] == list(dict.fromkeys(row.template for _, row in EMIT8.rows()))
