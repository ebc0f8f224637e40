"""Reading run directories back: one row per run for the comparison report.

A run directory holds ``config.yaml`` (the resolved training config) and
``metrics.json`` (training), optionally ``eval.json``, ``profile.json``,
``export.json`` and the sweep's ``status.json``. Keys starting with ``_`` (the
curve, the overrides, latency details) are for the report's own use and stay out
of the CSV.
"""

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from segbench.errors import DataError

log = logging.getLogger(__name__)

RUN_FILES = ("metrics.json", "status.json")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def find_runs(runs_dir: Path) -> list[Path]:
    """Run directories under ``runs_dir`` (any depth): those with metrics.json or status.json."""
    found = {
        p.parent
        for name in RUN_FILES
        for p in Path(runs_dir).rglob(name)
        if not any(part.startswith(".") or part == "wandb" for part in p.parent.parts[-3:])
    }
    return sorted(found)


def read_run(run_dir: Path, runs_dir: Path) -> dict:
    """One table row: identity, status, accuracy, budget, cost, latency, budget verdicts."""
    files = {
        name: _read_json(run_dir / f"{name}.json") or {}
        for name in ("metrics", "eval", "profile", "export", "status")
    }
    config = _read_yaml(run_dir / "config.yaml")
    status, metrics, prof = files["status"], files["metrics"], files["profile"]
    overrides = list(status.get("overrides") or [])
    row = {
        "run": str(run_dir.relative_to(runs_dir)) if run_dir != runs_dir else run_dir.name,
        "status": status.get("status") or ("ok" if metrics else "incomplete"),
        "reason": status.get("reason", "" if metrics else "no metrics.json"),
        **_identity(config, overrides),
        "_overrides": overrides,
    }
    if prof.get("input_size"):
        row["resolution"] = "x".join(map(str, prof["input_size"]))
    row.update(_accuracy(metrics, files["eval"]))
    row.update(runtime_accuracy(files["export"]))
    params = (prof.get("params") or {}).get("total") or metrics.get("params")
    row["params_m"] = params / 1e6 if params else None
    row["gflops"] = (prof.get("flops") or {}).get("gflops")
    row.update(_budget(metrics, config))
    row["_history"] = [
        (h["epoch"] + 1, h["val/miou"]) for h in metrics.get("history") or [] if "val/miou" in h
    ]
    row["_latency"] = {}
    for r in list(prof.get("latency") or []) + list(files["export"].get("latency") or []):
        key = latency_key(r)
        row[key] = r.get("median_ms")
        row[f"{key} spread"] = r.get("rel_spread")
        row[f"{key} noisy"] = r.get("noisy")
        row[f"{key} load/cpu"] = r.get("load_per_cpu")
        row["_latency"][key] = r
    for r in prof.get("budget") or []:
        row[budget_key(r["scenario"], r["device"], r["precision"])] = _verdict(r)
    return row


def latency_key(r: dict) -> str:
    """Column of a latency row: ``ms <runtime> <device type> <precision>[ <variant>] b<batch>``."""
    variant = f" {r['variant']}" if r.get("variant") else ""
    return (
        f"ms {r.get('runtime')} {r.get('device_type')} {r.get('precision')}{variant} "
        f"b{r.get('batch')}"
    )


def budget_key(scenario: str, device: str, precision: str) -> str:
    return f"{scenario} {device} {precision}"


def runtime_label(name: str, export: dict) -> str:
    """``onnxruntime`` -> ``onnxruntime fp32``, ``onnxruntime_int8`` -> ``onnxruntime int8``."""
    words = [w for w in re.split(r"[_\s-]+", name) if w]
    if words and words[-1] in PRECISIONS:
        return " ".join(words)
    precision = export.get("precision", "fp16") if name == "tensorrt" else "fp32"
    return " ".join([*words, precision])


def runtime_accuracy(export: dict) -> dict:
    """``miou <runtime> <precision>`` of every runtime export.json scored, and the deltas."""
    accuracy = export.get("accuracy") or {}
    out = {
        f"miou {runtime_label(name, export)}": value
        for name, value in (accuracy.get("miou") or {}).items()
    }
    out.update(
        {
            f"delta {runtime_label(name, export)}": value
            for name, value in (accuracy.get("miou_delta_points") or {}).items()
        }
    )
    if out and accuracy.get("split"):
        out["runtime_split"] = accuracy["split"]
    return out


def _accuracy(metrics: dict, evaluation: dict) -> dict:
    """Best val mIoU, evaluate.py's score, the test score, per-class IoU."""
    out = {
        "val_miou": metrics.get("best_val_miou"),
        "eval_miou": evaluation.get("miou"),
        "eval_split": evaluation.get("split"),
    }
    out["miou"] = out["eval_miou"] if out["eval_miou"] is not None else out["val_miou"]
    per_class = evaluation.get("per_class_iou") or metrics.get("per_class_iou") or {}
    out.update({f"iou_{name}": value for name, value in per_class.items()})
    out.update(_test_scores(metrics))
    return out


def _test_scores(metrics: dict) -> dict:
    """``test/miou`` and ``test/iou_<class>`` of a run trained with ``test_split``.

    Read from the top level of metrics.json or its ``test`` object (either spelling).
    """
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    sources = (metrics, test)
    miou = next(
        (
            src[k]
            for src in sources
            for k in ("test/miou", "test_miou", "best_test_miou")
            if src.get(k) is not None
        ),
        test.get("miou"),
    )
    out = {"test_miou": miou}
    for src in sources:
        out.update({f"test_iou_{k[9:]}": v for k, v in src.items() if k.startswith("test/iou_")})
    out.update({f"test_iou_{k}": v for k, v in (test.get("per_class_iou") or {}).items()})
    return out


def _budget(metrics: dict, config: dict) -> dict:
    """Epochs, steps, images seen, wall time and device of a run, and its configured budget."""
    history = metrics.get("history") or []
    steps = metrics.get("steps") or (history[-1].get("step") if history else None)
    batch = (config.get("data") or {}).get("batch_size")
    images = metrics.get("images_seen")
    if images is None and steps and batch:
        images = steps * batch  # runs from before metrics.json counted them
    trainer = config.get("trainer") or {}
    return {
        "epochs": metrics.get("epochs"),
        "max_epochs": trainer.get("max_epochs"),
        "batch_size": batch,
        "steps": steps,
        "images_seen": images,
        "train_time_s": metrics.get("wall_time_s"),
        "device": metrics.get("device") or trainer.get("accelerator"),
    }


def _verdict(r: dict) -> str:
    text = f"{'fits' if r['fits'] else 'no'} {r['headroom_pct']:+.0f}%"
    if "measured_fps" in r:
        text += f" ({r['measured_fps']:.1f} fps measured)"
    return text


def _identity(config: dict, overrides: Sequence[str]) -> dict:
    """Model, backbone, width, init, data, resolution and seed, from the config or overrides."""
    given = dict(o.lstrip("+").split("=", 1) for o in overrides if "=" in o)
    model = config.get("model") or {}
    backbone = config.get("backbone") or model.get("backbone") or {}
    data, init = config.get("data") or {}, config.get("init") or {}
    target = str(model.get("_target_", ""))
    size = data.get("image_size")
    seed = config.get("seed", given.get("seed"))
    return {
        "seed": None if seed is None else int(seed),
        "model": target.rpartition(".")[2].lower() or given.get("model", ""),
        "backbone": backbone.get("name") or given.get("backbone", ""),
        "width": backbone.get("width", given.get("backbone.width", "")),
        "init": backbone.get("weights") or init.get("scheme") or given.get("init", ""),
        "data": str((data.get("dataset") or {}).get("_target_", "")).rpartition(".")[2].lower()
        or given.get("data", ""),
        "resolution": "x".join(map(str, size)) if size else "",
    }


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        log.warning("%s: unreadable (%s); left out", path, err)
        return None


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        log.warning("%s: unreadable (%s); left out", path, err)
        return {}


def collect(runs_dir: Path) -> list[dict]:
    """Rows of every run under ``runs_dir``: finished ones by mIoU (best first), then the rest."""
    runs_dir = Path(runs_dir)
    rows = [read_run(d, runs_dir) for d in find_runs(runs_dir)]
    if not rows:
        raise DataError(
            runs_dir,
            "no run directories (metrics.json or status.json) found",
            fix="pass a train runs/ or multirun/ folder of segbench runs",
        )
    return sorted(rows, key=lambda r: (r["status"] != "ok", -(r["miou"] or -1.0), r["run"]))


HEAD = [
    "run",
    "status",
    "reason",
    "model",
    "backbone",
    "width",
    "init",
    "data",
    "resolution",
    "seed",
    "miou",
    "val_miou",
    "eval_miou",
    "eval_split",
    "test_miou",
    "params_m",
    "gflops",
    "epochs",
    "max_epochs",
    "batch_size",
    "steps",
    "images_seen",
    "train_time_s",
    "device",
]


def columns_of(rows: list[dict]) -> list[str]:
    """Every column (``_`` keys left out), in a stable, readable order."""
    rest = sorted(
        {k for r in rows for k in r if not k.startswith("_")} - set(HEAD),
        key=lambda k: (
            not k.startswith("iou_"),
            not k.startswith("test_iou_"),
            not k.startswith(("miou ", "delta ")),
            not k.startswith("ms "),
            k,
        ),
    )
    return HEAD + rest
