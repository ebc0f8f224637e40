"""Inference latency per zoo model and runtime: eager PyTorch vs ONNX Runtime, batch 1.

Every model of the zoo on its lightest backbone (MobileNetV2 x1.0; ERFNet and
SegNet-Basic bring their own encoders) at 360x480 (CamVid) and 1024x512
(half-resolution Cityscapes, H x W = 512 x 1024), with random weights (latency
does not depend on them). Rows come from segbench's own profiling code
(``segbench.profiling.profile_network``): eager on every device there is,
ONNX Runtime through ``segbench.profiling.latency.exported_latency`` (the network exported
to a temporary dynamic-shape ONNX file, parity-probed), TensorRT and CUDA
fp16/bf16 where a GPU and TensorRT are present, skipped with the reason
otherwise.

    python -m bench.latency [--runs 10] [--warmup 2] [--models fcn unet ...]
        [--sizes 360x480 512x1024]

Targets: ONNX Runtime <= 0.6x eager on CPU; on a GPU the best fp16 runtime
>= 3x faster than eager fp32.
"""

import argparse
import statistics

import torch

from bench.common import machine, save

#: model -> how the table names it (FCN is the 8s variant, conf/model/fcn.yaml's default).
ZOO = {
    "fcn": "FCN-8s / MobileNetV2",
    "unet": "U-Net / MobileNetV2",
    "erfnet": "ERFNet",
    "pspnet": "PSPNet / MobileNetV2",
    "deeplabv3plus": "DeepLabV3+ / MobileNetV2",
    "segnet": "SegNet-Basic",
}
OWN_BACKBONE = {"erfnet": "erfnet", "segnet": "segnet_basic"}


def network_config(model: str) -> dict:
    """The network config train.py composes for ``model`` on CamVid (weights off)."""
    from omegaconf import OmegaConf

    from bench.common import compose

    cfg = compose(
        "train",
        [f"model={model}", f"backbone={OWN_BACKBONE.get(model, 'mobilenet')}", "data=camvid"],
    )
    net = OmegaConf.to_container(cfg.model, resolve=True)
    net["backbone"] = {**net.get("backbone", {}), "weights": None}
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(ZOO), choices=list(ZOO))
    parser.add_argument("--sizes", nargs="+", default=["360x480", "512x1024"], help="H x W")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    from segbench.models import build_network
    from segbench.profiling.profile import profile_network

    devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    runtimes = ("pytorch", "onnxruntime", "tensorrt")
    rows, skipped, summary = [], [], []
    for model in args.models:
        torch.manual_seed(0)
        net = build_network(network_config(model)).eval()
        for size in args.sizes:
            h, w = (int(v) for v in size.split("x"))
            result = profile_network(
                net,
                (h, w),
                batch_size=1,
                runtimes=runtimes,
                devices=devices,
                warmup=args.warmup,
                runs=args.runs,
            )
            for row in result["latency"]:
                row["model"], row["label"] = model, ZOO[model]
            rows += result["latency"]
            skipped += [{**s, "model": model, "size": [h, w]} for s in result["skipped"]]
            ms = {
                (r["runtime"], r["device_type"], r["precision"]): r["median_ms"]
                for r in result["latency"]
            }
            eager = ms[("pytorch", "cpu", "fp32")]
            ort = ms.get(("onnxruntime", "cpu", "fp32"))
            line = {
                "model": model,
                "label": ZOO[model],
                "size": [h, w],
                "gflops": result["flops"]["gflops"],
                "params_m": result["params"]["total"] / 1e6,
                "eager_cpu_ms": eager,
                "ort_cpu_ms": ort,
                "ort_over_eager": ort / eager if ort else None,
                "onnx_dynamic_hw": next(
                    (r["onnx_dynamic_hw"] for r in result["latency"] if "onnx_dynamic_hw" in r),
                    None,
                ),
            }
            if ("pytorch", "cuda", "fp32") in ms:
                best_fp16 = min(
                    v for (rt, dev, prec), v in ms.items() if dev == "cuda" and prec == "fp16"
                )
                line["cuda_eager_fp32_ms"] = ms[("pytorch", "cuda", "fp32")]
                line["cuda_best_fp16_ms"] = best_fp16
                line["fp16_speedup"] = ms[("pytorch", "cuda", "fp32")] / best_fp16
            summary.append(line)
            ratio = f"{line['ort_over_eager']:.2f}x" if ort else "-"
            print(
                f"{model} {h}x{w}: eager {eager:.1f} ms, ORT {ort or float('nan'):.1f} ms "
                f"({ratio} of eager)",
                flush=True,
            )
    ratios = [s["ort_over_eager"] for s in summary if s["ort_over_eager"]]
    result = {
        "machine": machine(),
        "settings": {
            "batch": 1,
            "runs": args.runs,
            "warmup": args.warmup,
            "classes": 11,
            "weights": "random (seed 0)",
            "threads": torch.get_num_threads(),
        },
        "summary": summary,
        "rows": rows,
        "skipped": skipped,
        "ort_over_eager": {
            "min": min(ratios),
            "median": statistics.median(ratios),
            "max": max(ratios),
            "target": 0.6,
        }
        if ratios
        else None,
    }
    save("latency", result)


if __name__ == "__main__":
    main()
