"""The graph ONNX Runtime's CPU INT8 is made from, and the rules its quantisation follows.

:func:`export_source` writes the network's deploy form (:mod:`segbench.models.deploy`)
at a static H/W and checks it against the network in fp32; :func:`input_pools` and
:func:`shared_ranges` are the two rules :func:`segbench.runtimes.int8.quantize`
applies to every graph (what stays fp32, which tensors share a range).
"""

import json
from pathlib import Path

import numpy as np
import torch

from segbench.models.deploy import deploy_form, nhwc_upsampling
from segbench.runtimes.onnx import OnnxModel, export_onnx


def export_source(
    net: torch.nn.Module,
    path: str | Path,
    input_size,
    exporter: str = "dynamo",
    opset: int = 18,
    metadata: dict[str, str] | None = None,
) -> dict:
    """Writes the fp32 graph INT8 is quantised from: ``net``'s deploy form, static H/W.

    H and W are fixed at ``input_size``, the size the graph is calibrated at (the
    batch stays dynamic). The deploy form is checked against ``net`` in fp32 on
    one seeded input through ONNX Runtime before anything is quantised.

    Returns:
        :func:`export_onnx`'s record plus ``deploy_form`` (the rewrites) and
        ``deploy_form_max_abs_diff`` (ONNX Runtime fp32 vs ``net``).

    Raises:
        RuntimeError: the deploy form computes something else than ``net``.
    """
    net = net.cpu().float().eval()
    deployed, changes = deploy_form(net)
    with nhwc_upsampling() as factors:
        info = export_onnx(
            deployed,
            path,
            input_size,
            dynamic=False,
            exporter=exporter,
            opset=opset,
            metadata=metadata,
            why_static="the INT8 graph is calibrated and run at one input size",
        )
    changes += [f"nearest upsampling x{f} -> NHWC broadcast copy" for f in sorted(factors)]
    x = torch.randn(1, 3, *input_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = net(x)
    diff = (OnnxModel(path, threads=torch.get_num_threads()).logits(x) - ref).abs().max().item()
    if not np.isfinite(diff) or diff > 1e-3 * max(1.0, ref.abs().max().item()):
        raise RuntimeError(
            f"the deploy form of {type(net).__name__} ({'; '.join(changes)}) differs from the "
            f"network by {diff:.3g} in fp32: a rewrite in segbench.models.deploy is wrong"
        )
    return {**info, "deploy_form": changes, "deploy_form_max_abs_diff": diff}


#: What :func:`input_pools` and :func:`shared_ranges` do, as export.json records it.
RULES = (
    "pooling that reads the input image stays fp32",
    "the tensors of a concatenation share one range where none widens over 2x",
)


def input_pools(graph) -> list[str]:
    """Names of the pooling nodes that read a graph input (kept fp32 by :func:`quantize`)."""
    inputs = {i.name for i in graph.input}
    return [
        n.name
        for n in graph.node
        if n.op_type in ("MaxPool", "AveragePool") and n.input[0] in inputs
    ]


#: Ops that move values without computing: a range passes through them unchanged.
_MOVES = {"Transpose", "Reshape", "Expand", "Unsqueeze", "Squeeze", "Identity", "Flatten"}


def shared_ranges(graph, cache_path: str | Path, max_widening: float = 2.0) -> dict:
    """``TensorQuantOverrides`` giving each concatenation's tensors one common range.

    The group of a Concat is its output, its inputs, and the tensors they were
    moved from (:data:`_MOVES`: the NHWC upsampling copy); groups that share a
    tensor merge. Each tensor of a group gets the union of their calibrated
    ranges, so the integer graph concatenates by copying, unless that would widen
    a tensor's range more than ``max_widening`` times; that group requantises.
    """
    data = json.loads(Path(cache_path).read_text())["data"]
    ranges = {
        name: (t["lowest"]["data"][0], t["highest"]["data"][0])
        for name, t in data.items()
        if "lowest" in t and "highest" in t
    }
    producer = {out: node for node in graph.node for out in node.output}
    groups: list[set[str]] = []
    for node in graph.node:
        if node.op_type != "Concat":
            continue
        group = {node.output[0]}
        for name in node.input:
            while name in ranges and name not in group:
                group.add(name)
                moved = producer.get(name)
                name = moved.input[0] if moved is not None and moved.op_type in _MOVES else ""
        for other in [g for g in groups if g & group]:
            group |= other
            groups.remove(other)
        groups.append(group)
    overrides = {}
    for group in groups:
        known = {t: ranges[t] for t in group if t in ranges}
        if len(known) < 2:
            continue
        low, high = min(r[0] for r in known.values()), max(r[1] for r in known.values())
        ops = {t: producer[t].op_type for t in known if t in producer}
        # Shared only where no tensor loses more than one bit (its range at most doubled):
        # U-Net's ReLU'd decoder features beside signed encoder skips lost 9 mIoU points.
        narrow = any(high - low > max_widening * max(hi - lo, 1e-12) for lo, hi in known.values())
        # The quantiser folds a Relu / Clip into its output's range: a Relu output must
        # keep 0 as its lowest value, a Clip output its whole range, or the activation is
        # silently dropped (an untrained U-Net's INT8 agreed on 24 % of pixels, not 94 %).
        relu_below_zero = low < 0 and "Relu" in ops.values()
        clip_widened = any(op == "Clip" and known[t] != (low, high) for t, op in ops.items())
        if not (narrow or relu_below_zero or clip_widened):
            shared = {"rmin": np.float32(low), "rmax": np.float32(high)}
            overrides |= {t: [dict(shared)] for t in known}
    return overrides
