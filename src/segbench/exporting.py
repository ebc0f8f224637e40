"""export(cfg): checkpoint -> ONNX (-> TensorRT), verified against PyTorch, written up in export.json.

``python export.py ckpt_path=... [format=tensorrt precision=fp16] [benchmark=true]``
or ``segbench export ...`` (same config, ``conf/export.yaml``).
"""

import copy
import itertools
import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from segbench.errors import ConfigError, SegbenchError, exit_on_user_error
from segbench.evaluation import score_split, summarize, torch_predictor
from segbench.models import load_network
from segbench.runtimes.benchmark import Runtime, format_table, latency_table
from segbench.runtimes.onnx import OnnxModel, export_onnx

log = logging.getLogger(__name__)

FORMATS = ("onnx", "tensorrt")


class ParityError(SegbenchError):
    """The exported model's predictions differ from PyTorch's more than allowed."""


def export(cfg: DictConfig) -> dict:
    """Exports ``cfg.ckpt_path``, checks parity (and mIoU, latency), writes ``export.json``.

    Files go to ``cfg.paths.output_dir``: ``model.onnx``, ``model_<precision>.engine``
    for TensorRT, and ``export.json``.

    Raises:
        ConfigError: a bad format, precision or input size; TensorRT missing.
        ParityError: argmax agreement below ``cfg.parity_min_agreement`` (after
            ``export.json`` is written, so the numbers can be read).
    """
    if cfg.format not in FORMATS:
        raise ConfigError("format", cfg.format, "unknown export format", allowed=FORMATS)
    if cfg.format == "onnx" and cfg.precision != "fp32":
        raise ConfigError(
            "precision",
            cfg.precision,
            "the ONNX graph is fp32; fp16 and int8 are TensorRT builds",
            fix="add format=tensorrt (or precision=fp32)",
        )
    if cfg.format == "tensorrt":
        from segbench.runtimes.tensorrt import import_tensorrt

        import_tensorrt()  # before any work: say now that TensorRT or the GPU is missing
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    net, hparams = load_network(cfg.ckpt_path)
    meta = hparams["data"]
    data_cfg = cfg.get("data") or OmegaConf.create(hparams["datamodule"])
    datamodule = instantiate(data_cfg, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    datamodule.prepare_data()
    input_size = list(cfg.input_size or meta["image_size"])
    if min(input_size) < net.min_size:
        raise ConfigError(
            "input_size",
            input_size,
            f"is below the network's minimum {net.min_size}",
            fix=f"use H, W >= {net.min_size}",
        )

    onnx_path = out / "model.onnx"
    metadata = {
        "segbench.mean": json.dumps(meta["mean"]),
        "segbench.std": json.dumps(meta["std"]),
        "segbench.class_names": json.dumps(meta["class_names"]),
        "segbench.input": "RGB in [0,1], (x - mean) / std, NCHW float32",
    }
    onnx_info = export_onnx(
        net, onnx_path, input_size, cfg.dynamic, cfg.exporter, cfg.opset, metadata
    )
    report = {
        "ckpt_path": str(cfg.ckpt_path),
        "model": hparams["net"]["_target_"],
        "backbone": hparams["net"].get("backbone"),
        "format": cfg.format,
        "precision": cfg.precision if cfg.format == "tensorrt" else "fp32",
        "files": {"onnx": _file(onnx_path)},
        "onnx": onnx_info,
        "preprocessing": {
            "mean": meta["mean"],
            "std": meta["std"],
            "input": metadata["segbench.input"],
            "pad_multiple": net.pad_multiple,
            "padding": "inside the graph: bottom/right zeros to pad_multiple, "
            "logits cropped back to H, W",
        },
    }

    models = {
        "onnxruntime": OnnxModel(onnx_path, device=cfg.device, threads=torch.get_num_threads())
    }
    if cfg.format == "tensorrt":
        from segbench.runtimes.tensorrt import TensorRTModel

        engine = _build_engine(cfg, onnx_path, onnx_info, datamodule, input_size)
        report["files"]["engine"] = _file(engine)
        models["tensorrt"] = TensorRTModel(engine)

    device = torch.device(cfg.device)
    net.to(device)
    dataset = datamodule.get_split(cfg.split)
    count = min(cfg.parity_images, len(dataset))
    images = [dataset[i]["image"] for i in range(count)]
    report["parity"] = {
        name: parity(net, model, images, cfg.batch_size, device, cfg.parity_min_agreement)
        for name, model in models.items()
    }

    miou = {}
    if cfg.evaluate:
        limit = cfg.get("evaluate_images")
        batches = math.ceil(limit / cfg.batch_size) if limit else None

        def split_batches():
            return itertools.islice(datamodule.loader(cfg.split), batches)

        miou = {
            name: summarize(
                score_split(predict, split_batches(), meta["num_classes"], meta["ignore_index"]),
                meta["class_names"],
            )["miou"]
            for name, predict in [("pytorch", torch_predictor(net, device)), *models.items()]
        }
        report["accuracy"] = {
            "split": cfg.split,
            "images": min(len(dataset), batches * cfg.batch_size) if batches else len(dataset),
            "miou": miou,
            "miou_delta_points": {
                name: round((value - miou["pytorch"]) * 100, 4)
                for name, value in miou.items()
                if name != "pytorch"
            },
        }
    if cfg.benchmark:
        runtimes = [Runtime("pytorch", net, device=cfg.device)]
        runtimes += [
            Runtime(
                name,
                model.logits,
                device=cfg.device if name != "tensorrt" else "cuda",
                precision=report["precision"] if name == "tensorrt" else "fp32",
                **_runtime_tags(model),
            )
            for name, model in models.items()
        ]
        report["latency"] = latency_table(
            runtimes, input_size, cfg.bench.batch_sizes, cfg.bench.warmup, cfg.bench.runs, miou
        )
        log.info("latency at %dx%d:\n%s", *input_size, format_table(report["latency"]))

    (out / "export.json").write_text(json.dumps(report, indent=2))
    log.info("export report -> %s", out / "export.json")
    failed = {name: p for name, p in report["parity"].items() if not p["passed"]}
    if failed:
        raise ParityError(
            "; ".join(
                f"{name}: argmax agreement {p['agreement_pct']:.3f}% < parity_min_agreement="
                f"{cfg.parity_min_agreement}% (max |logit diff| {p['max_abs_diff']:.3g}) on "
                f"{p['images']} {cfg.split} images; see {out / 'export.json'}"
                for name, p in failed.items()
            )
        )
    return report


def parity(
    net: torch.nn.Module,
    model,
    images: list[torch.Tensor],
    batch_size: int,
    device: torch.device,
    min_agreement: float,
) -> dict:
    """Compares ``model.logits`` with PyTorch on ``images`` (normalised ``(3, H, W)`` each).

    Returns:
        ``images``, ``max_abs_diff`` and ``mean_abs_diff`` of the logits,
        ``agreement_pct`` (pixels with the same argmax), ``passed``.
    """
    max_diff, sum_diff, same, total = 0.0, 0.0, 0, 0
    for i in range(0, len(images), batch_size):
        batch = torch.stack(images[i : i + batch_size])
        with torch.inference_mode():
            ref = net(batch.to(device)).float().cpu()
        got = model.logits(batch).float().cpu()
        diff = (got - ref).abs()
        max_diff, sum_diff = max(max_diff, diff.max().item()), sum_diff + diff.sum().item()
        same += (got.argmax(1) == ref.argmax(1)).sum().item()
        total += ref[:, 0].numel()
    agreement = 100.0 * same / max(total, 1)
    return {
        "images": len(images),
        "max_abs_diff": max_diff,
        "mean_abs_diff": sum_diff / max(total * net.num_classes, 1),
        "agreement_pct": agreement,
        "min_agreement_pct": min_agreement,
        "passed": agreement >= min_agreement,
    }


def latency_rows(
    net: torch.nn.Module,
    runtime: str,
    input_size: Sequence[int],
    batch_sizes: Sequence[int],
    devices: Iterable[str] = ("cpu", "cuda"),
    precisions: Iterable[str] = ("fp32", "fp16"),
    warmup: int = 3,
    runs: int = 20,
) -> list[dict]:
    """Latency rows of ``net`` exported to ``runtime``, in the layout of profiling's eager rows.

    The network is exported to a temporary ONNX file at ``input_size`` (dynamic
    where it can be) and timed on random input. ONNX Runtime runs the fp32 graph
    on every device in ``devices`` it has an execution provider for; TensorRT
    builds one engine per precision (``int8`` is skipped here: it needs
    calibration images, see ``export.py precision=int8``).

    Raises:
        ConfigError: ``runtime`` is unknown; TensorRT or its GPU is missing.
    """
    import tempfile

    if runtime not in ("onnxruntime", "tensorrt"):
        raise ConfigError(
            "runtime", runtime, "has no exported form", allowed=["onnxruntime", "tensorrt"]
        )
    if runtime == "tensorrt":
        from segbench.runtimes.tensorrt import TensorRTModel, build_engine, import_tensorrt

        import_tensorrt()
    input_size, batch_sizes = [int(v) for v in input_size], [int(b) for b in batch_sizes]
    rows = []
    with tempfile.TemporaryDirectory(prefix="segbench-latency-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        info = export_onnx(copy.deepcopy(net).cpu().float().eval(), onnx_path, input_size)
        if runtime == "onnxruntime":
            import onnxruntime as ort

            available = ort.get_available_providers()
            candidates = [
                (d, OnnxModel(onnx_path, device=d, threads=torch.get_num_threads()))
                for d in devices
                if d == "cpu"
                or (
                    d == "cuda"
                    and torch.cuda.is_available()
                    and "CUDAExecutionProvider" in available
                )
            ]
            runners = [
                Runtime("onnxruntime", model.logits, device=d, **_runtime_tags(model))
                for d, model in candidates
            ]
        else:
            runners = []
            for precision in (p for p in precisions if p in ("fp32", "fp16")):
                engine = build_engine(
                    onnx_path,
                    Path(tmp) / f"model_{precision}.engine",
                    precision,
                    min_shape=(1, 3, *input_size),
                    opt_shape=(1, 3, *input_size),
                    max_shape=(max(batch_sizes), 3, *input_size),
                )
                runners.append(
                    Runtime(
                        "tensorrt", TensorRTModel(engine).logits, device="cuda", precision=precision
                    )
                )
        for row in latency_table(runners, input_size, batch_sizes, warmup, runs):
            row["input_size"] = input_size
            row["fps"] = 1000.0 * row["batch"] / row["median_ms"]
            row["onnx_dynamic_hw"] = info["dynamic"]["height"]
            rows.append(row)
    return rows


def _build_engine(
    cfg: DictConfig, onnx_path: Path, onnx_info: dict, datamodule, input_size: list[int]
) -> Path:
    from segbench.runtimes.tensorrt import CalibrationBatches, build_engine

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


def _runtime_tags(model) -> dict:
    if isinstance(model, OnnxModel):
        import onnxruntime as ort

        return {
            "providers": model.session.get_providers(),
            "onnxruntime": ort.__version__,
            "threads": model.session.get_session_options().intra_op_num_threads,
        }
    return {}


def _file(path: Path) -> dict:
    return {"path": str(path), "size_mb": round(path.stat().st_size / 2**20, 3)}


def main() -> None:
    """``segbench export key=value ...``: the same as ``python export.py``."""
    import hydra

    from segbench.config import CONFIG_DIR, run_checked

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="export")
    def _main(cfg: DictConfig) -> None:
        with exit_on_user_error():
            export(cfg)

    run_checked(_main)


if __name__ == "__main__":
    main()
