"""The streaming dataflow top (`codegen --interface stream`): processes, channels, FIFO depths.

`plan_dataflow(emission, graph) -> Dataflow` turns the layer list of an Emission into a
process network for `#pragma HLS DATAFLOW`:

  stream_in     reads the window from the top's input port (one value per beat, time-major:
                x[0][0], x[1][0], ..., x[C-1][0], x[0][1], ...) and writes one token per step
  p_<layer>     one process per layer: reads every token of its input tensor(s) into local
                arrays, runs the layer's kernel (the very call of the memory top), writes its
                output one token per step to every consumer (a fan-out writes each token to
                each consumer's channel in the same loop iteration)
  stream_out    reads the output tensor and writes the forecast to the output port (one value
                per beat, time-major: y[0][0], y[1][0], ..., y[C-1][0], y[0][1], ...)

A token is one step of a tensor, every channel: `column<C>` (C values of data_t). Channels
are `hls::stream<column<C> >`, one per (producer, consumer) pair.

FIFO depths (the generator's rule, docs/hls.md "Streaming dataflow top"). Each process reads
ALL of its input before it writes anything, so a process with two inputs blocks its earlier
input's producer until the later input arrives. Rank every tensor by (level, graph order),
level = 1 + the deepest level of its inputs (the window: 0). Of a process's distinct inputs,
the highest-ranked (the last to be produced) gets a FIFO of depth 2; every other one gets the
whole tensor (L tokens), so its producer never waits. Every single-input channel gets depth 2.
Then no process waits on a producer of higher rank than itself... each wait points to a
strictly lower rank, so no cycle of waits (deadlock) can form (proof in docs/hls.md).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from codegen.emission import Emission
from intsim.errors import CmambaError
from intsim.graph import INPUT_NAME

MIN_DEPTH = 2
_ACT_REF = re.compile(r"\bact\.([A-Za-z_]\w*)\b")
_INPUT_REF = re.compile(r"\binput\b")


@dataclass
class Channel:
    name: str            # C identifier of the hls::stream: s<k>_<producer>
    tensor: str          # the tensor it carries (a layer name or "input")
    consumer: str        # the layer that reads it ("output": the top's output port)
    channels: int        # token width (values per token)
    tokens: int          # tokens per window (the tensor's length)
    depth: int           # FIFO depth in tokens


@dataclass
class Process:
    name: str                                  # C function name
    tensor: str                                # the layer it computes ("" for stream_in/stream_out)
    layer_index: int                           # row of the loop counters (layer k; len(layers) for io)
    inputs: list[Channel] = field(default_factory=list)
    outputs: list[Channel] = field(default_factory=list)
    buffers: list[tuple[str, int, int]] = field(default_factory=list)   # local arrays (name, C, L)
    in_buffers: list[str] = field(default_factory=list)                 # buffer of each input
    out_buffer: str = ""
    call: str = ""                             # the kernel call on the local buffers
    comment: str = ""


@dataclass
class Dataflow:
    processes: list[Process]
    channels: list[Channel]
    column_widths: list[int]                   # distinct token widths, sorted

    def fifo_bits(self, elem_bits: int) -> int:
        return sum(c.depth * c.channels * elem_bits for c in self.channels)


def buffer_name(cname_or_input: str) -> str:
    return f"buf_{cname_or_input}"


def local_call(call: str) -> str:
    """The Step's call with `act.<cname>` -> `buf_<cname>` and `input` -> `buf_input`."""
    out = _INPUT_REF.sub(buffer_name("input"), _ACT_REF.sub(lambda m: buffer_name(m.group(1)), call))
    if "act." in out:
        raise CmambaError(f"stream top: cannot localise the call {call!r}")
    return out


def tensor_levels(graph) -> dict[str, int]:
    """Level of every tensor: the window 0, a layer 1 + the deepest of its inputs."""
    level = {INPUT_NAME: 0}
    for layer in graph.layers:
        level[layer.name] = 1 + max(level[t] for t in layer.inputs)
    return level


def fifo_depths(graph) -> dict[tuple[str, str], int]:
    """(tensor, consuming layer) -> FIFO depth in tokens, by the rule of the module docstring."""
    level = tensor_levels(graph)
    order = {name: k for k, name in enumerate(graph.tensor_names)}
    depths: dict[tuple[str, str], int] = {}
    for layer in graph.layers:
        distinct = list(dict.fromkeys(layer.inputs))
        last = max(distinct, key=lambda t: (level[t], order[t]))
        for t in distinct:
            depths[(t, layer.name)] = MIN_DEPTH if t == last else max(MIN_DEPTH, graph.tensor_shape(t)[1])
    return depths


def plan_dataflow(em: Emission, graph) -> Dataflow:
    names = {b.tensor: b.cname for b in em.buffers}
    names[INPUT_NAME] = INPUT_NAME
    depths = fifo_depths(graph)
    consumers: dict[str, list[str]] = {t: [] for t in graph.tensor_names}
    for layer in graph.layers:
        for t in dict.fromkeys(layer.inputs):
            consumers[t].append(layer.name)
    out_tensor = graph.output_tensor

    channels: dict[tuple[str, str], Channel] = {}

    def channel(tensor: str, consumer: str) -> Channel:
        key = (tensor, consumer)
        if key not in channels:
            c, length = graph.tensor_shape(tensor)
            channels[key] = Channel(f"s{len(channels)}_{names[tensor]}", tensor, consumer or "output", c, length,
                                    depths.get(key, MIN_DEPTH))
        return channels[key]

    def outputs_of(tensor: str) -> list[Channel]:
        outs = [channel(tensor, c) for c in consumers[tensor]]
        if tensor == out_tensor:
            outs.append(channel(tensor, ""))
        return outs

    n_layers = len(graph.layers)
    c_in, l_in = graph.input_shape
    procs = [Process("stream_in", "", n_layers, outputs=outputs_of(INPUT_NAME),
                     buffers=[], comment=f"window [{c_in}][{l_in}] from the input port, one value per beat")]
    steps = {s.tensor: s for s in em.steps}
    for k, layer in enumerate(graph.layers):
        st = steps[layer.name]
        distinct = list(dict.fromkeys(layer.inputs))
        lengths = {graph.tensor_shape(t)[1] for t in distinct}
        if len(lengths) > 1:
            raise CmambaError(f"layer '{layer.name}': the stream top reads its inputs token by token together, "
                              f"but their lengths differ ({sorted(lengths)})")
        p = Process(f"p_{names[layer.name]}", layer.name, k, inputs=[channel(t, layer.name) for t in distinct],
                    outputs=outputs_of(layer.name), call=local_call(st.call), comment=st.comment)
        for t in distinct:
            c, length = graph.tensor_shape(t)
            p.buffers.append((buffer_name(names[t]), c, length))
            p.in_buffers.append(buffer_name(names[t]))
        c, length = layer.shape
        p.out_buffer = buffer_name(names[layer.name])
        p.buffers.append((p.out_buffer, c, length))
        procs.append(p)
    c_o, l_o = graph.tensor_shape(out_tensor)
    procs.append(Process("stream_out", "", n_layers, inputs=[channel(out_tensor, "")],
                         buffers=[(buffer_name("output"), c_o, l_o)], in_buffers=[buffer_name("output")],
                         comment=f"forecast [{graph.output_channels}][{graph.horizon}] to the output port, "
                                 f"one value per beat"))
    chans = list(channels.values())
    return Dataflow(procs, chans, sorted({ch.channels for ch in chans}))
