"""``export.py format=onnx precision=int8``: ONNX Runtime static INT8 of the network.

``model_int8.onnx`` (QDQ) is quantised from the network's deploy form at a static
H/W (:func:`segbench.runtimes.int8_graph.export_source`), calibrated on
``calibration.images`` frames of ``calibration.split`` (the training split; the
scored split is refused), checked for parity and scored like the fp32 graph. Where it loses more than
``int8.max_miou_drop`` mIoU points (or fails parity), the layers are ranked by
the SQNR INT8 costs them (on calibration frames) and the graph is re-quantised
keeping the worst ``k`` in fp32, for each ``k`` of ``int8.fallback_layers``, until
one is within the threshold. ``export.json`` ``int8`` records all of it.
"""

import logging
import shutil
import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig

from segbench.deploy.accuracy import rescore
from segbench.deploy.parity import parity
from segbench.errors import ConfigError
from segbench.runtimes.calibration import CalibrationBatches, ort_reader
from segbench.runtimes.int8 import Int8Settings, kernel_precision, preprocess, quantize
from segbench.runtimes.int8_graph import export_source
from segbench.runtimes.int8_layers import exclusion, rank_layers
from segbench.runtimes.latency import time_callable
from segbench.runtimes.onnx import OnnxModel

log = logging.getLogger(__name__)

#: How many of the ranked layers export.json lists.
LAYERS_LISTED = 10


def wants_int8(cfg: DictConfig) -> bool:
    return cfg.format == "onnx" and cfg.precision == "int8"


def check_int8(cfg: DictConfig) -> Int8Settings:
    """The INT8 settings, checked before any work; refuses calibrating on the scored split."""
    if cfg.calibration.split == cfg.split:
        raise ConfigError(
            "calibration.split",
            cfg.calibration.split,
            f"is the split that is scored (split={cfg.split}): the INT8 ranges would be "
            "fitted to the frames the accuracy is then measured on",
            fix="calibrate on the training split (calibration.split=train)",
        )
    layers = list(cfg.int8.fallback_layers or [])
    if any(not isinstance(k, int) or k < 1 for k in layers):
        raise ConfigError("int8.fallback_layers", layers, "must be positive layer counts")
    i8 = cfg.int8
    return Int8Settings(
        i8.method, i8.per_channel, i8.activation_type, i8.weight_type, i8.percentile
    ).check()


class Int8Export:
    """The INT8 model of one export: built, then checked and (if needed) repaired.

    Args:
        cfg: The export config (``calibration``, ``int8``, ``split``, ...).
        net: The trained network (its deploy form is what is quantised).
        out: The export folder: ``model_int8.onnx`` and its calibration cache
            ``model_int8.calib.json`` go there.
        datamodule: Gives the calibration split.
        input_size: ``(H, W)`` of the INT8 graph; the calibration frames are resized to it.
        metadata: The ONNX metadata of ``model.onnx`` (mean, std, class names), copied.
    """

    def __init__(
        self, cfg: DictConfig, net, out: Path, datamodule, input_size, metadata: dict
    ) -> None:
        self.cfg, self.settings = cfg, check_int8(cfg)
        self.path = out / "model_int8.onnx"
        self.cache = out / "model_int8.calib.json"
        self.cache.unlink(missing_ok=True)  # ranges of an earlier export are stale
        self._tmp = tempfile.TemporaryDirectory(prefix="segbench-int8-")
        self.work = Path(self._tmp.name)
        self.pre = self.work / "model_pre.onnx"
        source = self.work / "model_deploy_fp32.onnx"
        graph = export_source(net, source, input_size, cfg.exporter, cfg.opset, metadata)
        calib = cfg.calibration
        self.batches = CalibrationBatches(
            datamodule.get_split(calib.split),
            input_size,
            calib.batch_size,
            calib.images,
            key="calibration.images",
        )
        self.record = {
            "settings": self.settings.record(),
            "calibration": {
                "split": calib.split,
                "images": len(self.batches.indices),
                "indices": self.batches.indices,
                "batch_size": calib.batch_size,
                "input_size": list(self.batches.input_size),
                "cache": str(self.cache),
            },
            "graph": {
                "deploy_form": graph["deploy_form"],
                "deploy_form_max_abs_diff": graph["deploy_form_max_abs_diff"],
                "input": graph["input"],
                "static_reason": graph["static_reason"],
            },
            "preprocess": preprocess(source, self.pre),
            "quantize_s": round(
                time_callable(
                    lambda: quantize(
                        self.pre, self.path, ort_reader(self.batches), self.settings, self.cache
                    ),
                    warmup=0,
                    runs=1,
                )["median_ms"]
                / 1e3,
                2,
            ),
            "excluded_nodes": [],
        }
        self.record.update(self._graph(self.path))
        self.model = self._session(self.path)

    def files(self) -> dict:
        return {"onnx_int8": _file(self.path), "calibration_cache": _file(self.cache)}

    def finish(self, report: dict, net, images, device, datamodule, meta: dict) -> dict:
        """Checks the INT8 graph against the threshold, repairs it if it can; the ``int8`` record.

        Updates ``report`` (parity, accuracy) when a repaired graph replaces the first one.
        """
        limit = self.cfg.int8.max_miou_drop
        delta = report.get("accuracy", {}).get("miou_delta_points", {}).get("onnxruntime_int8")
        first = _attempt([], [], report["parity"]["onnxruntime_int8"], delta)
        self.record |= {
            "max_miou_drop": limit,
            "accuracy_checked": delta is not None,
            "attempts": [first],
        }
        if _fine(first, limit) or not self.cfg.int8.fallback_layers:
            return self._close(first, _fine(first, limit))
        ranking = self._rank()
        ranked = [layer for layer in ranking["layers"] if layer["drop_db"] is not None]
        self.record |= {
            "layers": ranked[:LAYERS_LISTED],
            "logits_sqnr_db": ranking["logits_sqnr_db"],
        }
        for k in self.cfg.int8.fallback_layers:
            worst = ranked[:k]
            exclude = exclusion(self.pre, worst)
            candidate = self.work / f"model_int8_keep{k}.onnx"
            quantize(self.pre, candidate, None, self.settings, self.cache, exclude)
            model = self._session(candidate)
            check = parity(
                net, model, images, self.cfg.batch_size, device, self.cfg.int8.min_agreement
            )
            acc = _copy_accuracy(report.get("accuracy"))
            delta = (
                rescore(self.cfg, acc, "onnxruntime_int8", model, datamodule, meta) if acc else None
            )
            attempt = _attempt([w["module"] or w["node"] for w in worst], exclude, check, delta)
            self.record["attempts"].append(attempt)
            if _fine(attempt, limit):
                shutil.copyfile(candidate, self.path)
                self.model = self._session(self.path)
                report["parity"]["onnxruntime_int8"] = check
                if acc:
                    report["accuracy"] = acc
                self.record.update({"excluded_nodes": exclude, **self._graph(self.path)})
                return self._close(attempt, True)
            if len(worst) == len(ranked):
                break
        return self._close(first, False)

    def _rank(self) -> dict:
        count = self.cfg.int8.debug_images
        frames = CalibrationBatches(
            _Indexed(self.batches), self.batches.input_size, 1, count, key="int8.debug_images"
        )
        return rank_layers(self.pre, self.settings, ort_reader(frames), self.cache, self.work)

    def _graph(self, path: Path) -> dict:
        return kernel_precision(path, threads=torch.get_num_threads())

    def _session(self, path: Path) -> OnnxModel:
        return OnnxModel(path, device=self.cfg.device, threads=torch.get_num_threads())

    def _close(self, kept: dict, accepted: bool) -> dict:
        self._tmp.cleanup()
        self.record["accepted"] = accepted
        if not accepted:
            loss = kept["miou_delta_points"]
            layers = ", ".join(
                layer["module"] or layer["node"] for layer in self.record.get("layers", [])[:3]
            )
            self.record["reason"] = (
                (f"loses {-loss:.2f} mIoU points" if loss is not None else "")
                + (" and " if loss is not None and not kept["parity_passed"] else "")
                + (
                    ""
                    if kept["parity_passed"]
                    else f"agrees on {kept['agreement_pct']:.2f}% of pixels"
                )
                + f" (int8.max_miou_drop={self.cfg.int8.max_miou_drop}, "
                f"int8.min_agreement={self.cfg.int8.min_agreement}); "
                + (
                    f"keeping the worst layers by SQNR in fp32 ({layers}, ...) did not bring it within"
                    if layers
                    else "no fallback tried (int8.fallback_layers is empty)"
                )
            )
            log.warning("model_int8.onnx %s", self.record["reason"])
        return self.record


class _Indexed:
    """The calibration split restricted to the frames calibration read (for the layer ranking)."""

    def __init__(self, batches: CalibrationBatches) -> None:
        self.dataset, self.indices = batches.dataset, batches.indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.indices[i]]


def _attempt(layers: list, exclude: list, check: dict, delta: float | None) -> dict:
    return {
        "fp32_layers": layers,
        "fp32_nodes": len(exclude),
        "agreement_pct": check["agreement_pct"],
        "parity_passed": check["passed"],
        "miou_delta_points": delta,
    }


def _copy_accuracy(acc: dict | None) -> dict | None:
    """A copy of the accuracy report a candidate can be scored into without touching it."""
    if not acc:
        return None
    return {
        **acc,
        "miou": dict(acc["miou"]),
        "per_class_iou": dict(acc["per_class_iou"]),
    }


def _fine(attempt: dict, limit: float) -> bool:
    delta = attempt["miou_delta_points"]
    return attempt["parity_passed"] and (delta is None or -delta <= limit)


def _file(path: Path) -> dict:
    return {"path": str(path), "size_mb": round(path.stat().st_size / 2**20, 3)}
