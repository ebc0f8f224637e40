"""INT8 on the CPU: accuracy and latency of ONNX Runtime static INT8 against eager fp32, per model.

    python -m bench.int8 [--models erfnet unet deeplabv3plus] [--ckpt unet=<best.ckpt> ...]
        [--epochs 10] [--threads 2] [--runs 30] [--rounds 5] [--processes 3]
        [--train-args ...] [--export-args ...] [--out bench/out/int8]

For ERFNet, U-Net / MobileNetV2 and DeepLabV3+ / MobileNetV2 (x1.0): a CamVid
checkpoint (``--ckpt``, else bench-accuracy's ``bench/out/accuracy/<model>``, else
trained here with bench-accuracy's reduced CPU recipe), then one run of the real
entry point ``export.py precision=int8 benchmark=true`` per model at batch 1,
360x480, ``--threads`` threads: model.onnx and model_int8.onnx (calibrated on
64 train frames), the whole val split scored through PyTorch, ONNX Runtime fp32
and INT8, and the three timed. Then the three are timed again interleaved in
``--processes`` fresh processes (``--rounds`` rounds, each runtime ``--runs``
runs per round after half a second for the previous runtime's spinning threads
to park and 2 warm-up runs; paired ratios per round: a shared machine's drift hits
all three alike; the medians over the processes are reported, since a process's
memory layout alone moves a runtime by up to ~10 %), all on segbench's steady
heap (:mod:`segbench.runtimes.heap`), and ONNX Runtime's profiler splits each
graph's time by kernel (what stays fp32, how much is depthwise convolution,
Resize, layout transposes).

Writes ``bench/out/int8.json`` and the table ``<out>/int8_table.md``. Targets:
INT8 <= 0.25x eager fp32 latency, <= 1.0 mIoU point lost on CamVid val.
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.accuracy import MODELS as TRAIN_MODELS
from bench.accuracy import recipe
from bench.common import CAMVID, OUT, ROOT, machine, save

MODELS = {
    "erfnet": "ERFNet",
    "unet": "U-Net / MobileNetV2",
    "deeplabv3plus": "DeepLabV3+ / MobileNetV2",
}
TARGET_RATIO, TARGET_DROP = 0.25, 1.0
#: H, W every model is exported, scored and timed at.
SIZE = [360, 480]
#: Seconds between one runtime's block of runs and the next one's (spinning threads park).
PARK_S = 0.5


def run(script: str, overrides: list[str], threads: int, check: bool = True) -> int:
    command = [sys.executable, str(ROOT / script), *overrides]
    print("+", " ".join(command), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return subprocess.run(command, cwd=ROOT, check=check, env=env).returncode


def checkpoint(name: str, args) -> Path:
    """The model's CamVid checkpoint: given, bench-accuracy's, or trained now."""
    if name in args.ckpt:
        return Path(args.ckpt[name])
    for ckpt in (
        OUT / "accuracy" / name / "checkpoints" / "best.ckpt",
        args.out / name / "train" / "checkpoints" / "best.ckpt",
    ):
        if ckpt.is_file():
            return ckpt
    train = argparse.Namespace(**{**vars(args), "full": False, "seed": 42, "crop": [240, 320]})
    run(
        "train.py",
        [
            *TRAIN_MODELS[name],
            *recipe(train),
            "callbacks.model_cost=null",
            f"hydra.run.dir={args.out / name / 'train'}",
            *args.train_args,
        ],
        args.threads,
    )
    return args.out / name / "train" / "checkpoints" / "best.ckpt"


def interleaved(models: dict, size, rounds: int, runs: int) -> dict:
    """Median ms of each runtime over ``rounds`` round-robin rounds, and paired ratios to eager."""
    import torch

    from segbench.runtimes.latency import time_callable

    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    per_round = collections.defaultdict(list)
    with torch.inference_mode():
        for fn in models.values():
            time_callable(lambda fn=fn: fn(x), warmup=3, runs=1)
        for _ in range(rounds):
            for name, fn in models.items():
                # The previous runtime's idle threads spin for a while (OpenMP, ONNX Runtime's
                # pool) and take the cores from this one: let them park, then warm up again.
                time.sleep(PARK_S)
                timing = time_callable(lambda fn=fn: fn(x), warmup=2, runs=runs)
                per_round[name].append(timing["median_ms"])
    result = {
        name: {"median_ms": statistics.median(v), "rounds_ms": v} for name, v in per_round.items()
    }
    for name in models:
        ratios = [a / b for a, b in zip(per_round[name], per_round["eager"], strict=True)]
        result[name]["over_eager"] = statistics.median(ratios)
    return result


def kernel_profile(path: Path, size, threads: int, runs: int) -> dict:
    """Share of ONNX Runtime's time per kernel (``ms`` per run and %), depthwise convs apart.

    Kernels are the nodes of the graph ORT optimised for this CPU (its profile
    names them); a convolution with ``group`` > 1 is counted as depthwise.
    """
    import numpy as np
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
        name = session.get_inputs()[0].name
        for _ in range(runs + 2):
            session.run(None, {name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
        graph = onnx.load(options.optimized_model_filepath).graph
    groups = {n.name: next((a.i for a in n.attribute if a.name == "group"), 1) for n in graph.node}
    total = collections.Counter()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        op = e["args"].get("op_name", "?")
        if "Conv" in op and groups.get(e["name"].removesuffix("_kernel_time"), 1) > 1:
            op += " (depthwise)"
        total[op] += e["dur"] / 1e3 / (runs + 2)
    whole = sum(total.values()) or 1.0
    return {
        op: {"ms": round(ms, 2), "pct": round(100 * ms / whole, 1)}
        for op, ms in total.most_common()
    }


def time_in_this_process(export_dir: Path, threads: int, rounds: int, runs: int) -> dict:
    """:func:`interleaved` of the eager network, ORT fp32 and ORT INT8 of one export."""
    import torch

    from segbench.models import load_network
    from segbench.runtimes.onnx import OnnxModel

    torch.set_num_threads(threads)
    report = json.loads((export_dir / "export.json").read_text())
    net, _ = load_network(report["ckpt_path"])
    models = {
        "eager": net,
        "onnxruntime": OnnxModel(export_dir / "model.onnx", threads=threads).logits,
        "onnxruntime_int8": OnnxModel(export_dir / "model_int8.onnx", threads=threads).logits,
    }
    return interleaved(models, SIZE, rounds, runs)


def measure(name: str, export_dir: Path, args) -> dict:
    """Interleaved timings (in ``--processes`` fresh processes) and kernel profiles.

    A process's own memory layout moves every runtime's time by up to ~10 % from one
    process to the next on this VM; the figures are the medians over the processes,
    each process's INT8 / eager ratio kept beside them.
    """
    processes = []
    for _ in range(args.processes):
        command = [
            sys.executable, "-m", "bench.int8", "--time-only", str(export_dir),
            "--threads", str(args.threads), "--rounds", str(args.rounds), "--runs", str(args.runs),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        out = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout
        processes.append(json.loads(out.splitlines()[-1]))
    merged = {
        runtime: {
            "median_ms": statistics.median(p[runtime]["median_ms"] for p in processes),
            "over_eager": statistics.median(p[runtime]["over_eager"] for p in processes),
            "processes_ms": [p[runtime]["median_ms"] for p in processes],
            "processes_over_eager": [p[runtime]["over_eager"] for p in processes],
            "rounds_ms": [p[runtime]["rounds_ms"] for p in processes],
        }
        for runtime in processes[0]
    }
    onnx32, onnx8 = export_dir / "model.onnx", export_dir / "model_int8.onnx"
    return {
        "interleaved": merged,
        "kernels": {
            "onnxruntime": kernel_profile(onnx32, SIZE, args.threads, args.runs),
            "onnxruntime_int8": kernel_profile(onnx8, SIZE, args.threads, args.runs),
        },
    }


def summary(name: str, report: dict, measured: dict) -> dict:
    acc, lat = report.get("accuracy", {}), measured["interleaved"]
    rows = {(r["runtime"], r["precision"]): r for r in report.get("latency", [])}
    int8 = report["int8"]
    drop = -acc.get("miou_delta_points", {}).get("onnxruntime_int8", float("nan"))
    ratio = lat["onnxruntime_int8"]["over_eager"]
    return {
        "model": MODELS[name],
        "miou_pytorch": acc.get("miou", {}).get("pytorch"),
        "miou_onnxruntime": acc.get("miou", {}).get("onnxruntime"),
        "miou_int8": acc.get("miou", {}).get("onnxruntime_int8"),
        "miou_drop_points": drop,
        "class_delta_points": acc.get("class_delta_points", {}).get("onnxruntime_int8"),
        "agreement_pct": report["parity"]["onnxruntime_int8"]["agreement_pct"],
        "parity_passed": report["parity"]["onnxruntime_int8"]["passed"],
        "export_ms": {
            key: rows[(rt, p)]["median_ms"]
            for key, (rt, p) in {
                "eager": ("pytorch", "fp32"),
                "onnxruntime": ("onnxruntime", "fp32"),
                "onnxruntime_int8": ("onnxruntime", "int8"),
            }.items()
            if (rt, p) in rows
        },
        "ms": {k: v["median_ms"] for k, v in lat.items()},
        "int8_over_eager": ratio,
        "int8_over_onnxruntime": lat["onnxruntime_int8"]["median_ms"]
        / lat["onnxruntime"]["median_ms"],
        "fp32_kernels": int8["fp32_kernels"],
        "int8_accepted": int8["accepted"],
        "fp32_layers_kept": int8["attempts"][-1]["fp32_layers"] if int8["accepted"] else [],
        "meets_latency": ratio <= TARGET_RATIO,
        "meets_accuracy": drop <= TARGET_DROP,
    }


def render(lines: list[dict]) -> str:
    header = [
        "model", "mIoU fp32", "mIoU INT8", "delta (points)", "eager ms", "ORT fp32 ms",
        "ORT INT8 ms", "INT8 / eager", "INT8 / ORT fp32", "INT8 kernels left in fp32",
    ]  # fmt: skip
    out = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for s in lines:
        ms = s["ms"]
        fp32 = ", ".join(f"{k} x{v}" for k, v in s["fp32_kernels"].items()) or "-"
        out.append(
            f"| {s['model']} | {100 * s['miou_pytorch']:.2f} | {100 * s['miou_int8']:.2f} | "
            f"{-s['miou_drop_points']:+.2f} | {ms['eager']:.1f} | {ms['onnxruntime']:.1f} | "
            f"{ms['onnxruntime_int8']:.1f} | {s['int8_over_eager']:.2f} | "
            f"{s['int8_over_onnxruntime']:.2f} | {fp32} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(CAMVID))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--ckpt", nargs="*", default=[], help="model=path: use this checkpoint")
    parser.add_argument("--epochs", type=int, default=10, help="training (no checkpoint found)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30, help="timed runs (per round)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--out", type=Path, default=OUT / "int8")
    parser.add_argument("--train-args", nargs="*", default=[], help="extra train.py overrides")
    parser.add_argument("--export-args", nargs="*", default=[], help="extra export.py overrides")
    parser.add_argument("--processes", type=int, default=3, help="fresh processes timing")
    parser.add_argument("--time-only", type=Path, help=argparse.SUPPRESS)  # one process's timing
    args = parser.parse_args()
    if args.time_only:
        timing = time_in_this_process(args.time_only, args.threads, args.rounds, args.runs)
        print(json.dumps(timing))
        return
    args.ckpt = dict(item.split("=", 1) for item in args.ckpt)
    args.out = args.out.resolve()

    lines, runs = [], {}
    for name in args.models:
        ckpt, export_dir = checkpoint(name, args), args.out / name / "export"
        (export_dir / "export.json").unlink(missing_ok=True)
        code = run(
            "export.py",
            [
                f"ckpt_path={ckpt}", "precision=int8", "benchmark=true", f"input_size=[{SIZE[0]},{SIZE[1]}]",
                "bench.batch_sizes=[1]", f"bench.runs={args.runs}", f"hydra.run.dir={export_dir}",
                *args.export_args,
            ],
            args.threads,
            check=False,  # failed INT8 parity exits 1 after writing export.json: still a row
        )  # fmt: skip
        if not (export_dir / "export.json").is_file():
            raise SystemExit(f"error: export.py failed for {name} (exit {code}); see above")
        report = json.loads((export_dir / "export.json").read_text())
        measured = measure(name, export_dir, args)
        lines.append(summary(name, report, measured))
        runs[name] = {"ckpt": str(ckpt), "export": report, **measured, "summary": lines[-1]}
        print(render(lines[-1:]), flush=True)

    table = render(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8_table.md").write_text(table + "\n")
    save(
        "int8",
        {
            "machine": machine(),
            "settings": {
                "batch": 1,
                "input_size": SIZE,
                "threads": args.threads,
                "runs": args.runs,
                "rounds": args.rounds,
                "processes": args.processes,
                "train_args": args.train_args,
                "export_args": args.export_args,
                "targets": {"int8_over_eager": TARGET_RATIO, "miou_drop_points": TARGET_DROP},
            },
            "table": table,
            "summary": lines,
            "runs": runs,
        },
    )
    print(table)


if __name__ == "__main__":
    main()
