"""export(cfg): checkpoint -> ONNX (-> INT8 / TensorRT), verified against PyTorch, in export.json.

``python export.py ckpt_path=... [precision=int8] [format=tensorrt precision=fp16]
[benchmark=true]`` or ``segbench export ...`` (same config, ``conf/export.yaml``).
"""

import json
import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from segbench.config import CONFIG_DIR, run_checked
from segbench.data.datamodule import SegmentationDataModule
from segbench.deploy.accuracy import accuracy
from segbench.deploy.parity import check_parity, parity
from segbench.deploy.quantize import Int8Export, check_int8, wants_int8
from segbench.errors import ConfigError, exit_on_user_error
from segbench.evaluation.evaluate import checkpoint_data
from segbench.files import write_json
from segbench.models import SegmentationNetwork, load_network
from segbench.runtimes import runtime_key
from segbench.runtimes.calibration import CalibrationBatches
from segbench.runtimes.latency import Runtime, format_table, latency_table
from segbench.runtimes.onnx import OnnxModel, export_onnx, runtime_tags
from segbench.runtimes.parity import MIN_AGREEMENT
from segbench.runtimes.pytorch import torch_device
from segbench.runtimes.tensorrt import TensorRTModel, build_engine, import_tensorrt

log = logging.getLogger(__name__)

FORMATS = ("onnx", "tensorrt")
INPUT_CONVENTION = "RGB in [0,1], (x - mean) / std, NCHW float32"


def export(cfg: DictConfig) -> dict:
    """Exports ``cfg.ckpt_path``, checks parity (and mIoU, latency), writes ``export.json``.

    Files go to ``cfg.paths.output_dir``: ``model.onnx``, ``model_int8.onnx`` (ONNX
    Runtime INT8, :mod:`segbench.deploy.quantize`), ``model_<precision>.engine`` for
    TensorRT, and ``export.json``.

    Raises:
        ConfigError: a bad format, precision or input size; TensorRT missing.
        ParityError: argmax agreement below ``cfg.parity_min_agreement`` (INT8:
            ``cfg.int8.min_agreement``), after ``export.json`` is written, so the
            numbers can be read.
    """
    check_format(cfg)
    out = Path(cfg.paths.output_dir)
    net, hparams = load_network(cfg.ckpt_path)
    meta = hparams["data"]
    datamodule = checkpoint_data(cfg, hparams)
    input_size = list(cfg.input_size or meta["image_size"])
    if min(input_size) < net.min_size:
        raise ConfigError(
            "input_size",
            input_size,
            f"is below the network's minimum {net.min_size}",
            fix=f"use H, W >= {net.min_size}",
        )
    report, models = write_models(cfg, net, hparams, datamodule, input_size, out)
    int8 = (
        Int8Export(cfg, net, out, datamodule, input_size, onnx_metadata(meta))
        if wants_int8(cfg)
        else None
    )
    if int8:
        models["onnxruntime_int8"] = int8.model
        report["files"] |= int8.files()
    device = torch.device(cfg.device)
    net.to(device)
    dataset = datamodule.get_split(cfg.split)
    images = [dataset[i]["image"] for i in range(min(cfg.parity_images, len(dataset)))]
    report["parity"] = {
        name: parity(net, model, images, cfg.batch_size, device, _min_agreement(cfg, name))
        for name, model in models.items()
    }
    if cfg.evaluate:
        report["accuracy"] = accuracy(cfg, net, models, datamodule, meta)
    if int8:  # may replace model_int8.onnx, its parity and accuracy with a repaired one
        report["int8"] = int8.finish(report, net, images, device, datamodule, meta)
        models["onnxruntime_int8"] = int8.model
    if cfg.benchmark:
        miou = report.get("accuracy", {}).get("miou", {})
        report["latency"] = latency(cfg, net, models, report["precision"], input_size, miou)
        log.info("latency at %dx%d:\n%s", *input_size, format_table(report["latency"]))
    write_json(out / "export.json", report)
    log.info("export of %s:\n%s\n-> %s", cfg.ckpt_path, summary_table(report), out / "export.json")
    check_parity(report, cfg.split, str(out / "export.json"))
    return report


def check_format(cfg: DictConfig) -> None:
    """Refuses a format/precision pair segbench cannot build, before any work."""
    if cfg.format not in FORMATS:
        raise ConfigError("format", cfg.format, "unknown export format", allowed=FORMATS)
    if cfg.format == "onnx" and cfg.precision not in ("fp32", "int8"):
        raise ConfigError(
            "precision",
            cfg.precision,
            "the ONNX graph is fp32 (int8: ONNX Runtime static quantisation of it); "
            "fp16 is a TensorRT build",
            fix="add format=tensorrt (or precision=fp32 / int8)",
        )
    if wants_int8(cfg):
        check_int8(cfg)
    trt_int8 = cfg.format == "tensorrt" and cfg.precision == "int8"
    if trt_int8 and cfg.tensorrt.calibration_split == cfg.split:
        raise ConfigError(
            "tensorrt.calibration_split",
            cfg.tensorrt.calibration_split,
            f"is the split that is scored (split={cfg.split})",
            fix="calibrate on the training split (calibration.split=train)",
        )
    torch_device(cfg.device)  # device=cuda without CUDA: say so before any work
    if cfg.format == "tensorrt":
        import_tensorrt()  # say now that TensorRT or the GPU is missing


def _min_agreement(cfg: DictConfig, runtime: str) -> float:
    """Parity floor of an exported runtime: ``parity_min_agreement``, INT8's own for INT8."""
    if runtime == "onnxruntime_int8":
        return cfg.int8.min_agreement
    if runtime == "tensorrt" and cfg.precision != "fp32":
        return min(cfg.parity_min_agreement, MIN_AGREEMENT[cfg.precision])
    return cfg.parity_min_agreement


def onnx_metadata(meta: dict) -> dict[str, str]:
    """What every segbench ONNX graph carries: mean, std, class names, input convention."""
    return {
        "segbench.mean": json.dumps(meta["mean"]),
        "segbench.std": json.dumps(meta["std"]),
        "segbench.class_names": json.dumps(meta["class_names"]),
        "segbench.input": INPUT_CONVENTION,
    }


def write_models(
    cfg: DictConfig,
    net: SegmentationNetwork,
    hparams: dict,
    datamodule: SegmentationDataModule,
    input_size: list[int],
    out: Path,
) -> tuple[dict, dict]:
    """Writes ``model.onnx`` (and the TensorRT engine); returns the report so far and runners."""
    meta = hparams["data"]
    onnx_path = out / "model.onnx"
    out.mkdir(parents=True, exist_ok=True)
    onnx_info = export_onnx(
        net, onnx_path, input_size, cfg.dynamic, cfg.exporter, cfg.opset, onnx_metadata(meta)
    )
    report = {
        "ckpt_path": str(cfg.ckpt_path),
        "model": hparams["net"]["_target_"],
        "backbone": hparams["net"].get("backbone"),
        "format": cfg.format,
        "precision": cfg.precision,
        "files": {"onnx": _file(onnx_path)},
        "onnx": onnx_info,
        "preprocessing": {
            "mean": meta["mean"],
            "std": meta["std"],
            "input": INPUT_CONVENTION,
            "pad_multiple": net.pad_multiple,
            "padding": "inside the graph: bottom/right zeros to pad_multiple, "
            "logits cropped back to H, W",
        },
    }
    models = {
        "onnxruntime": OnnxModel(onnx_path, device=cfg.device, threads=torch.get_num_threads())
    }
    if cfg.format == "tensorrt":
        engine = _build_engine(cfg, onnx_path, onnx_info, datamodule, input_size)
        report["files"]["engine"] = _file(engine)
        models["tensorrt"] = TensorRTModel(engine)
    return report, models


def latency(
    cfg: DictConfig,
    net: SegmentationNetwork,
    models: dict,
    precision: str,
    input_size: list[int],
    miou: dict,
) -> list[dict]:
    """Latency of PyTorch and every exported runtime at each of ``cfg.bench.batch_sizes``."""
    runtimes = [Runtime("pytorch", net, device=cfg.device)]
    for name, model in models.items():
        tags = runtime_tags(model) if isinstance(model, OnnxModel) else {}
        trt = name == "tensorrt"
        runtimes.append(
            Runtime(
                "onnxruntime" if name == "onnxruntime_int8" else name,
                model.logits,
                device="cuda" if trt else cfg.device,
                precision={"tensorrt": precision, "onnxruntime_int8": "int8"}.get(name, "fp32"),
                **tags,
            )
        )
    rows = latency_table(
        runtimes, input_size, cfg.bench.batch_sizes, cfg.bench.warmup, cfg.bench.runs
    )
    for row in rows:  # onnxruntime fp32 and int8 share a runtime name: key mIoU by both
        if runtime_key(row) in miou:
            row["miou"] = miou[runtime_key(row)]
    return rows


def _build_engine(
    cfg: DictConfig, onnx_path: Path, onnx_info: dict, datamodule, input_size: list[int]
) -> Path:
    trt_cfg = cfg.tensorrt
    dynamic_hw = onnx_info["dynamic"]["height"]
    min_hw = list(trt_cfg.min_size) if dynamic_hw else input_size
    max_hw = list(trt_cfg.max_size or [2 * s for s in input_size]) if dynamic_hw else input_size
    calibration = None
    if cfg.precision == "int8":
        calibration = CalibrationBatches(
            datamodule.get_split(trt_cfg.calibration_split),
            input_size,
            trt_cfg.calibration_batch_size,
            trt_cfg.calibration_images,
            key="tensorrt.calibration_images",
        )
    out = onnx_path.parent
    return build_engine(
        onnx_path,
        out / f"model_{cfg.precision}.engine",
        cfg.precision,
        min_shape=(1, 3, *min_hw),
        opt_shape=(1, 3, *input_size),
        max_shape=(trt_cfg.max_batch, 3, *max_hw),
        workspace_gib=trt_cfg.workspace_gib,
        timing_cache=trt_cfg.timing_cache,
        calibration=calibration,
        calibration_cache=out / "int8.calib",
    )


def summary_table(report: dict) -> str:
    """Parity and mIoU per runtime of an export report, as a short text table."""
    accuracy = report.get("accuracy") or {}
    miou, delta = accuracy.get("miou", {}), accuracy.get("miou_delta_points", {})
    scored = f"mIoU {accuracy['split']} ({accuracy['images']} img)" if accuracy else "mIoU"
    lines = [
        f"{'runtime':<12} {'argmax agreement':>16} {'max |diff|':>10} {scored:>22} {'delta':>7}"
    ]
    for name in ("pytorch", *report["parity"]):
        p = report["parity"].get(name)
        agree = f"{p['agreement_pct']:.3f}%" if p else "reference"
        diff = f"{p['max_abs_diff']:.2g}" if p else "-"
        score = f"{100 * miou[name]:.2f}" if name in miou else "-"
        points = f"{delta[name]:+.2f}" if name in delta else "-"
        lines.append(f"{name:<12} {agree:>16} {diff:>10} {score:>22} {points:>7}")
    return "\n".join(lines)


def _file(path: Path) -> dict:
    return {"path": str(path), "size_mb": round(path.stat().st_size / 2**20, 3)}


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="export")
def _main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        export(cfg)


def main() -> None:
    """``segbench export key=value ...``: the same as ``python export.py``."""
    run_checked(_main)


if __name__ == "__main__":
    main()
