"""Generator: integer program -> Vitis-HLS-style C++ project + bit-exact g++ testbench.

Modules (one job each):
  project.py      generate_project(model, out_dir, precision, types, n_vectors, data, seed, layers)
                  -> GenerateResult; renders templates/, writes vectors; atomic, deterministic
  emission.py     THE PLUG-IN INTERFACE of a precision back end (read its docstring)
  emit_int16.py   INT16 back end (docs/quant-spec.md section 2)
  emit_int8.py    INT8 back end (section 3)
  names.py        layer names -> safe, unique C identifiers
  vectors.py      golden input vectors: adversarial extremes, real data windows, random
  build.py        build_and_run(out_dir, jobs) -> TestbenchResult (g++ through the Makefile)
  synth_check.py  check_project(out_dir) -> SynthReport: synthesizability checks on g++'s view of
                  the firmware (no C++ library, no float, constant trip counts, ...; docs/hls.md)
  dataflow.py     the stream top (--interface stream): processes, channels, FIFO depths, timing model
  reuse.py        reuse factors (--reuse, --reuse-layer): per layer lanes and II, the validity rule
  estimate.py     estimate(graph, ...) -> Estimate: cycles, DSPs, BRAM/LUT memory on paper (ESTIMATE rows)
  (the `codegen` and `compare` commands live in the application package: cmamba_hls/codegen_cli.py,
  cmamba_hls/compare_cli.py)

Plug-in interface, in short (details: codegen/emission.py and docs/hls.md): a module
`codegen/emit_<precision>.py` defines `emit(model, names, types, external=False) -> Emission` with
  typedefs        e.g. ["typedef i8_t data_t;"]
  op_templates    its operator templates, e.g. ["int8/conv1x1.h.j2", ...] -> firmware/ops/
  configs         one Config per layer -> `struct cfg_<cname>` in firmware/params.h
  consts          ConstArray tables -> firmware/weights/<group>.h (static const)
  buffers, steps  every layer's output buffer and its C++ call, in graph order -> top.cpp
  input_shape, output_buffer, output_shape, elem_bits (8 | 16), input_limits
  quantize_input(x_norm) -> ints; run_golden(x_q) -> (output ints [N, C_out, H], {tensor: ints})
Shared primitives (firmware/primitives.h, stdint or ap flavour): i8_t i16_t i32_t i64_t,
acc_int<W>::type, rne_shift(x, n), shift_round<N>(x), sat8/sat16/sat32, round_sat8<N>,
round_sat16<N>, rne_div, isqrt_rne, requantize8(acc, m0, shift, zp).
"""
