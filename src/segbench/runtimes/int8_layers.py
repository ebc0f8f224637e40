"""Which layers INT8 hurts: activation SQNR of the QDQ graph against the fp32 graph.

ONNX Runtime's ``qdq_loss_debug`` runs both graphs on the same frames with every
activation made an output and matches them by tensor name. For each layer's
output, ``sqnr_db`` is 20 log10(|float| / |float - dequantised|) across the
graphs (the error accumulated up to there) and ``drop_db`` the SQNR lost across
that layer (its input's SQNR minus its output's): the layers with the largest
drop are the ones to keep in fp32. Node names map to PyTorch module names
through the exporter's ``pkg.torch.onnx.name_scopes`` metadata (a convolution
the exporter folded with its BatchNorm carries the BatchNorm's name).
"""

import logging
from pathlib import Path

from segbench.runtimes.int8 import Int8Settings, module_name, quantize

log = logging.getLogger(__name__)

#: Activations the QDQ quantiser folds into the producer's output range.
_ACTIVATIONS = {"Relu", "Clip"}


def rank_layers(
    pre_path: str | Path,
    settings: Int8Settings,
    frames_reader,
    cache_path: str | Path,
    workdir: str | Path,
) -> dict:
    """Layers of the pre-processed fp32 graph ranked by the SQNR INT8 costs them, worst first.

    Args:
        pre_path: The pre-processed fp32 model (node names as the quantiser sees them).
        settings: The quantisation being debugged.
        frames_reader: ``CalibrationDataReader`` over a few *calibration* frames
            (every activation of every frame is held in memory: keep it small).
        cache_path: The calibration ranges of the real quantisation.
        workdir: Scratch folder for the debug and augmented models.

    Returns:
        ``layers`` (tensor, node, op, module, sqnr_db, qdq_sqnr_db, drop_db) and
        ``logits_sqnr_db``.
    """
    import onnx

    workdir = Path(workdir)
    qdq = workdir / "debug_qdq.onnx"
    quantize(pre_path, qdq, None, settings, cache_path, keep_activations=True)
    errors = _activation_errors(Path(pre_path), qdq, frames_reader, workdir)
    graph = onnx.load(str(pre_path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    layers = []
    for tensor, err in errors.items():
        node = producer.get(tensor)
        # A tensor read only by Relu/Clip was quantised with the activation's range:
        # its SQNR says nothing; the activation's output carries the layer.
        readers = consumers.get(tensor, set())
        if node is None or "xmodel_err" not in err or (readers and readers <= _ACTIVATIONS):
            continue
        layer = producer.get(node.input[0]) if node.op_type in _ACTIVATIONS else node
        inputs = [
            errors[i]["xmodel_err"]
            for i in (layer or node).input
            if "xmodel_err" in errors.get(i, {})
        ]
        layers.append(
            {
                "tensor": tensor,
                "node": (layer or node).name,
                "op": (layer or node).op_type,
                "module": module_name(layer or node),
                "sqnr_db": round(err["xmodel_err"], 2),
                "qdq_sqnr_db": round(err["qdq_err"], 2),
                "drop_db": round(min(inputs) - err["xmodel_err"], 2) if inputs else None,
            }
        )
    layers.sort(key=lambda r: -(r["drop_db"] if r["drop_db"] is not None else -1e9))
    outputs = [o.name for o in graph.output]
    logits = errors.get(outputs[0], {}).get("xmodel_err")
    return {"layers": layers, "logits_sqnr_db": round(logits, 2) if logits else None}


def exclusion(pre_path: str | Path, layers: list[dict]) -> list[str]:
    """Node names to keep in fp32 for ``layers`` (of :func:`rank_layers`).

    The layer's node, the activation behind it, and the consumers of its
    output (else they would quantise that tensor again with the same range).
    """
    import onnx

    graph = onnx.load(str(pre_path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.name)
    names: set[str] = set()
    for layer in layers:
        node = producer.get(layer["tensor"])
        while node is not None:
            names.add(node.name)
            node = producer.get(node.input[0]) if node.op_type in _ACTIVATIONS else None
        names.update(readers.get(layer["tensor"], []))
    return sorted(names)


def _activation_errors(float_path: Path, qdq_path: Path, reader, workdir: Path) -> dict:
    """``{tensor: {qdq_err, xmodel_err}}`` (dB) of ``qdq_loss_debug`` on ``reader``'s frames."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    acts = {}
    for name, path in (("float", float_path), ("qdq", qdq_path)):
        augmented = workdir / f"debug_{name}_augmented.onnx"
        modify_model_output_intermediate_tensors(str(path), str(augmented))
        reader.rewind()
        acts[name] = collect_activations(str(augmented), reader)
    return compute_activation_error(create_activation_matching(acts["qdq"], acts["float"]))
