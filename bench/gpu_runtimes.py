"""GPU runtimes per MobileNet-family model: eager fp32/fp16 vs channels_last, CUDA graphs,
torch.compile, each parity-checked on real CamVid frames before it is timed.

    source .gpu/env.sh && python3 -m bench.gpu_runtimes [--models fcn unet pspnet deeplabv3plus]
        [--shapes 1x360x480 8x1024x2048] [--train-steps 100] [--runs 30] [--warmup 5]
        [--compile-mode reduce-overhead] [--out bench/out/gpu_runtimes.json]

Each model (MobileNetV2 x1.0, 11 CamVid classes) is first trained briefly on
the GPU on CamVid train frames (``--train-steps`` Adam steps, batch 8, a plain
loop: trained weights give logits with real margins, so argmax parity means
something; random weights leave most pixels on near-ties), scored on val, then
timed at each shape through segbench's own rows
(:func:`segbench.profiling.latency.runtime_latency`): eager fp32 and fp16, and
the parity-gated ``channels_last``, ``cuda_graphs`` and ``torch_compile``
(parity frames: CamVid val, resized to the shape), with cuDNN autotuning on for
every row alike (``--no-cudnn-benchmark``: off). The file is rewritten after
every model, so a run cut short keeps what it measured.

Target: the best runtime >= 3x eager fp32 at batch 1, 360x480 and at batch 8,
1024x2048, per model.
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from bench.common import CAMVID, OUT, compose, machine

MODELS = {
    "fcn": "FCN-8s / MobileNetV2",
    "unet": "U-Net / MobileNetV2",
    "pspnet": "PSPNet / MobileNetV2",
    "deeplabv3plus": "DeepLabV3+ / MobileNetV2",
}
FAST = ("channels_last", "cuda_graphs", "torch_compile")
TARGET = 3.0


def train(net: torch.nn.Module, datamodule, steps: int, device: str) -> float:
    """``steps`` Adam steps (bf16 autocast) on train frames; returns seconds."""
    start = time.perf_counter()
    net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    epochs = (batch for _ in itertools.count() for batch in datamodule.loader("train", True))
    for batch in itertools.islice(epochs, steps):
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            logits = net(batch["image"].to(device, non_blocking=True))
        loss = torch.nn.functional.cross_entropy(
            logits.float(), batch["mask"].to(device).long(), ignore_index=datamodule.ignore_index
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def val_miou(net: torch.nn.Module, datamodule, device: str, batches: int | None) -> float:
    from segbench.evaluation.evaluate import score_split, summarize
    from segbench.runtimes.pytorch import torch_predictor

    confmat = score_split(
        torch_predictor(net.eval(), device),
        itertools.islice(datamodule.loader("val"), batches),
        datamodule.num_classes,
        datamodule.ignore_index,
    )
    return summarize(confmat, datamodule.class_names)["miou"]


def eager_fp16_parity(net, frames, shape, device: str) -> dict:
    """Eager fp16 is an ungated row of segbench's profile; its parity is recorded here."""
    import copy

    from segbench.runtimes.parity import MIN_AGREEMENT, agreement, fit_batch
    from segbench.runtimes.pytorch import eager_logits

    x = fit_batch(frames, shape[0], shape[1:])
    ref = eager_logits(copy.deepcopy(net), device, "fp32")
    half = eager_logits(copy.deepcopy(net), device, "fp16")
    return agreement(ref, half, [x], MIN_AGREEMENT["fp16"])


def measure(net, frames, shape, args) -> tuple[list[dict], list[dict]]:
    from segbench.profiling.latency import runtime_latency

    batch, size = shape[0], list(shape[1:])
    common = {"devices": (args.device,), "warmup": args.warmup, "runs": args.runs}
    precisions = ("fp32", "fp16") if args.device == "cuda" else ("fp32",)
    rows, skipped = runtime_latency("pytorch", net, size, [batch], precisions=precisions, **common)
    half = next((r for r in rows if r["precision"] == "fp16"), None)
    if half is not None:
        half["parity"] = eager_fp16_parity(net, frames, shape, args.device)
    for name in FAST:
        got, skip = runtime_latency(
            name, net, size, [batch], images=frames, compile_mode=args.compile_mode, **common
        )
        rows, skipped = rows + got, skipped + skip
        if args.device == "cuda":
            torch.cuda.empty_cache()
    return rows, skipped


def line(model: str, shape, rows: list[dict], skipped: list[dict]) -> dict:
    ms = {f"{r['runtime']} {r['precision']}": r["median_ms"] for r in rows}
    eager = ms.get("pytorch fp32")
    best = min(ms, key=ms.get) if ms else None
    return {
        "model": MODELS[model],
        "batch": shape[0],
        "size": list(shape[1:]),
        "ms": ms,
        "agreement_pct": {
            f"{r['runtime']} {r['precision']}": r["parity"]["agreement_pct"]
            for r in rows
            if "parity" in r
        },
        "skipped": {f"{s['runtime']} {s.get('precision', '')}": s["reason"] for s in skipped},
        "best": best,
        "speedup": eager / ms[best] if eager and best else None,
        "meets_target": bool(eager and best and eager / ms[best] >= TARGET),
    }


def render(lines: list[dict]) -> str:
    runtimes = [
        "pytorch fp32",
        "pytorch fp16",
        "channels_last fp16",
        "cuda_graphs fp16",
        "torch_compile fp16",
    ]
    header = ["model", "batch x H x W", *[f"{r} ms" for r in runtimes], "best", "best / eager fp32"]
    out = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for s in lines:
        cells = [f"{s['ms'][r]:.2f}" if r in s["ms"] else "skipped" for r in runtimes]
        speed = f"{s['speedup']:.2f}x" if s["speedup"] else "-"
        shape = f"{s['batch']} x {s['size'][0]} x {s['size'][1]}"
        out.append(f"| {s['model']} | {shape} | {' | '.join(cells)} | {s['best']} | {speed} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(CAMVID))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--shapes", nargs="+", default=["1x360x480", "8x1024x2048"], help="NxHxW")
    parser.add_argument("--train-steps", type=int, default=100)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--compile-mode", default=None, help="torch.compile mode (default: reduce-overhead)"
    )
    parser.add_argument("--parity-frames", type=int, default=8)
    parser.add_argument("--workers", type=int, default=8, help="data loader processes")
    parser.add_argument("--val-batches", type=int, default=None, help="score only N val batches")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of the script itself")
    parser.add_argument(
        "--no-cudnn-benchmark",
        action="store_true",
        help="keep cuDNN's default algorithm choice (default: autotune, for every row alike)",
    )
    parser.add_argument("--out", type=Path, default=OUT / "gpu_runtimes.json")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device: this benchmark times GPU runtimes")
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from segbench.models import build_network

    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark  # shapes are fixed per row
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    lines, result = [], {"machine": machine(), "settings": vars(args) | {"out": str(args.out)}}
    for model in args.models:
        cfg = compose(
            "train",
            [f"model={model}", "backbone=mobilenet", "data=camvid", f"data.root={args.data_root}",
             "data.batch_size=8", f"data.num_workers={args.workers}"],
        )  # fmt: skip
        datamodule = instantiate(cfg.data)
        net_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        net_cfg["backbone"] = {**net_cfg["backbone"], "weights": None}
        torch.manual_seed(0)
        net = build_network(net_cfg)
        train_s = train(net, datamodule, args.train_steps, args.device)
        miou = val_miou(net, datamodule, args.device, args.val_batches)
        net = net.cpu().float().eval()
        val = datamodule.get_split("val")
        frames = [val[i]["image"] for i in range(args.parity_frames)]
        for shape in shapes:
            rows, skipped = measure(net, frames, shape, args)
            lines.append(
                line(model, shape, rows, skipped) | {"val_miou": miou, "train_s": round(train_s, 1)}
            )
            result.setdefault("rows", []).extend({**r, "model": model} for r in rows)
            result.setdefault("skipped", []).extend({**s, "model": model} for s in skipped)
            print(render(lines[-1:]), flush=True)
        result |= {"summary": lines, "table": render(lines)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str))
    print(result["table"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
