"""The streaming dataflow top (`codegen --interface stream`): processes, channels, FIFO depths.

`plan_dataflow(graph, emission=None) -> Dataflow` turns the layer list into a process network
for `#pragma HLS DATAFLOW` (with the Emission: each process's kernel call; without: the
topology only, for the estimator):

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

Read order and deadlock. Each process reads ALL of its inputs before it writes anything. Rank
every tensor by (level, graph order), level = 1 + the deepest level of its inputs (the window:
0); a process reads its distinct inputs one after another in ascending rank. Then every wait
points to a strictly lower rank: a reader waits on its producer, and a writer blocked on a full
FIFO waits on a consumer that is still reading one of its lower-ranked inputs (had the consumer
passed the writer's channel, it would have read all of it). No cycle of waits, no deadlock, at
any FIFO depth >= 1.

FIFO depths (the generator's rule, docs/hls.md "Streaming dataflow top") are for throughput:
consecutive windows overlap in the DATAFLOW pipeline, one window per process. Where a process
joins two paths (the residual add, the scan, the gate), the input it reads first arrives
`level(last input) - level(this input)` processes earlier than the last one, and that many
windows of it are in flight while the longer path catches up. So an input read before the last
gets a FIFO of that many windows (its L tokens each); every other channel gets depth 2. With
these depths the process network runs at the pace of its slowest process
(`simulate_dataflow`, a token-level timing model, checks it: tests/test_dataflow.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from codegen.emission import Emission
from codegen.names import sanitize_names
from intsim.errors import CmambaError
from intsim.graph import INPUT_NAME, Graph

MIN_DEPTH = 2
_ACT_REF = re.compile(r"\bact\.([A-Za-z_]\w*)\b")
_INPUT_REF = re.compile(r"\binput\b")


@dataclass
class Channel:
    name: str  # C identifier of the hls::stream: s<k>_<producer>
    tensor: str  # the tensor it carries (a layer name or "input")
    consumer: str  # the layer that reads it ("output": the top's output port)
    channels: int  # token width (values per token)
    tokens: int  # tokens per window (the tensor's length)
    depth: int  # FIFO depth in tokens


@dataclass
class Process:
    name: str  # C function name
    tensor: str  # the layer it computes ("" for stream_in/stream_out)
    layer_index: int  # row of the loop counters (layer k; len(layers) for io)
    inputs: list[Channel] = field(default_factory=list)
    outputs: list[Channel] = field(default_factory=list)
    buffers: list[tuple[str, int, int]] = field(default_factory=list)  # local arrays (name, C, L)
    in_buffers: list[str] = field(default_factory=list)  # buffer of each input
    out_buffer: str = ""
    call: str = ""  # the kernel call on the local buffers
    comment: str = ""


@dataclass
class Dataflow:
    processes: list[Process]
    channels: list[Channel]


def buffer_name(cname_or_input: str) -> str:
    return f"buf_{cname_or_input}"


def local_call(call: str) -> str:
    """The Step's call with `act.<cname>` -> `buf_<cname>` and `input` -> `buf_input`."""
    out = _INPUT_REF.sub(buffer_name("input"), _ACT_REF.sub(lambda m: buffer_name(m.group(1)), call))
    if "act." in out:
        raise CmambaError(f"stream top: cannot localise the call {call!r}")
    return out


def tensor_levels(graph: Graph) -> dict[str, int]:
    """Level of every tensor: the window 0, a layer 1 + the deepest of its inputs."""
    level = {INPUT_NAME: 0}
    for layer in graph.layers:
        level[layer.name] = 1 + max(level[t] for t in layer.inputs)
    return level


def read_order(graph: Graph) -> dict[str, list[str]]:
    """Layer -> its distinct input tensors in the order its process reads them: ascending rank."""
    level = tensor_levels(graph)
    order = {name: k for k, name in enumerate(graph.tensor_names)}
    return {
        layer.name: sorted(dict.fromkeys(layer.inputs), key=lambda t: (level[t], order[t])) for layer in graph.layers
    }


def fifo_depths(graph: Graph) -> dict[tuple[str, str], int]:
    """(tensor, consuming layer) -> FIFO depth in tokens, by the rule of the module docstring."""
    level = tensor_levels(graph)
    depths: dict[tuple[str, str], int] = {}
    for layer, inputs in read_order(graph).items():
        last = inputs[-1]
        for t in inputs:
            windows = level[last] - level[t]
            depths[(t, layer)] = max(MIN_DEPTH, windows * graph.tensor_shape(t)[1])
    return depths


def plan_dataflow(graph: Graph, em: Emission | None = None) -> Dataflow:
    names = (
        {b.tensor: b.cname for b in em.buffers}
        if em is not None
        else sanitize_names(layer.name for layer in graph.layers)
    )
    names[INPUT_NAME] = INPUT_NAME
    depths = fifo_depths(graph)
    reads = read_order(graph)
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
            channels[key] = Channel(
                f"s{len(channels)}_{names[tensor]}", tensor, consumer or "output", c, length, depths.get(key, MIN_DEPTH)
            )
        return channels[key]

    def outputs_of(tensor: str) -> list[Channel]:
        outs = [channel(tensor, c) for c in consumers[tensor]]
        if tensor == out_tensor:
            outs.append(channel(tensor, ""))
        return outs

    n_layers = len(graph.layers)
    c_in, l_in = graph.input_shape
    procs = [
        Process(
            "stream_in",
            "",
            n_layers,
            outputs=outputs_of(INPUT_NAME),
            buffers=[],
            comment=f"window [{c_in}][{l_in}] from the input port, one value per beat",
        )
    ]
    calls = {s.tensor: (local_call(s.call), s.comment) for s in em.steps} if em is not None else {}
    for k, layer in enumerate(graph.layers):
        call, comment = calls.get(layer.name, ("", layer.name))
        distinct = reads[layer.name]
        p = Process(
            f"p_{names[layer.name]}",
            layer.name,
            k,
            inputs=[channel(t, layer.name) for t in distinct],
            outputs=outputs_of(layer.name),
            call=call,
            comment=comment,
        )
        for t in distinct:
            c, length = graph.tensor_shape(t)
            p.buffers.append((buffer_name(names[t]), c, length))
            p.in_buffers.append(buffer_name(names[t]))
        c, length = layer.shape
        p.out_buffer = buffer_name(names[layer.name])
        p.buffers.append((p.out_buffer, c, length))
        procs.append(p)
    c_o, l_o = graph.tensor_shape(out_tensor)
    procs.append(
        Process(
            "stream_out",
            "",
            n_layers,
            inputs=[channel(out_tensor, "")],
            buffers=[(buffer_name("output"), c_o, l_o)],
            in_buffers=[buffer_name("output")],
            comment=f"forecast [{graph.output_channels}][{graph.horizon}] to the output port, one value per beat",
        )
    )
    return Dataflow(procs, list(channels.values()))


def simulate_dataflow(
    df: Dataflow, compute: dict[str, int], windows: int = 8, depths: dict[str, int] | None = None
) -> list[int]:
    """Token-level timing of `windows` consecutive windows through the process network: every
    process reads its inputs' tokens one per cycle (one input after another), computes for
    `compute[name]` cycles, writes its tokens one per cycle to all its outputs, then starts the
    next window; a token can be read the cycle after it is written, and written only when its
    FIFO (`depths[channel]`, default the planned depths) has room. Returns the cycle at which
    each window's last output value leaves stream_out. A deadlock raises CmambaError."""
    depth = {ch.name: ch.depth for ch in df.channels} if depths is None else depths
    wrote: dict[str, list[int]] = {ch.name: [] for ch in df.channels}  # cycle each token was written
    read: dict[str, list[int]] = {ch.name: [] for ch in df.channels}  # cycle each token was read
    actions = {}
    for p in df.processes:
        seq: list[tuple] = []
        for _ in range(windows):
            seq += [("read", ch) for ch in p.inputs for _ in range(ch.tokens)]
            seq.append(("compute", compute.get(p.name, 0)))
            out_tokens = p.outputs[0].tokens if p.outputs else 0
            seq += [("write",)] * out_tokens
            seq.append(("done",))
        actions[p.name] = seq
    pos = {p.name: 0 for p in df.processes}
    clock = {p.name: 0 for p in df.processes}
    finished: list[int] = []
    while True:
        moved = False
        for p in df.processes:
            seq, k, t = actions[p.name], pos[p.name], clock[p.name]
            while k < len(seq):
                act = seq[k]
                if act[0] == "read":
                    ch = act[1].name
                    i = len(read[ch])
                    if i >= len(wrote[ch]):
                        break
                    t = max(t, wrote[ch][i] + 1)
                    read[ch].append(t)
                    t += 1
                elif act[0] == "compute":
                    t += act[1]
                elif act[0] == "write":
                    room = []
                    for ch in p.outputs:
                        i = len(wrote[ch.name]) - depth[ch.name]  # the token that must have left first
                        if i >= 0 and i >= len(read[ch.name]):
                            break
                        room.append(read[ch.name][i] + 1 if i >= 0 else 0)
                    else:
                        t = max([t] + room)
                        for ch in p.outputs:
                            wrote[ch.name].append(t)
                        t += 1
                        k += 1
                        continue
                    break
                elif p.name == "stream_out":
                    finished.append(t)
                k += 1
            moved |= k != pos[p.name]
            pos[p.name], clock[p.name] = k, t
        if all(pos[name] == len(seq) for name, seq in actions.items()):
            return finished
        if not moved:
            raise CmambaError("dataflow simulation: deadlock (no process can move)")
