"""Reading run directories back: one row per run for the comparison report.

A run directory holds ``config.yaml`` (the resolved training config) and
``metrics.json`` (training), optionally ``eval.json``, ``profile.json``,
``export.json`` and the sweep's ``status.json``.
"""

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import yaml

from segbench.errors import DataError

log = logging.getLogger(__name__)

RUN_FILES = ("metrics.json", "status.json")


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
    """One table row: identity, status, accuracy, cost, latency per runtime, budget verdicts."""
    files = {
        name: _read_json(run_dir / f"{name}.json")
        for name in ("metrics", "eval", "profile", "export", "status")
    }
    config = _read_yaml(run_dir / "config.yaml")
    status = files["status"] or {}
    metrics, evaluation, prof = files["metrics"] or {}, files["eval"] or {}, files["profile"] or {}
    row = {
        "run": str(run_dir.relative_to(runs_dir)) if run_dir != runs_dir else run_dir.name,
        "status": status.get("status") or ("ok" if metrics else "incomplete"),
        "reason": status.get("reason", "" if metrics else "no metrics.json"),
    }
    row.update(_identity(config, status.get("overrides") or []))
    if prof.get("input_size"):
        row["resolution"] = "x".join(map(str, prof["input_size"]))
    row["val_miou"] = metrics.get("best_val_miou")
    row["eval_miou"] = evaluation.get("miou")
    row["eval_split"] = evaluation.get("split")
    row["miou"] = row["eval_miou"] if row["eval_miou"] is not None else row["val_miou"]
    per_class = evaluation.get("per_class_iou") or metrics.get("per_class_iou") or {}
    row.update({f"iou_{name}": value for name, value in per_class.items()})
    params = (prof.get("params") or {}).get("total") or metrics.get("params")
    row["params_m"] = params / 1e6 if params else None
    row["gflops"] = (prof.get("flops") or {}).get("gflops")
    row["epochs"] = metrics.get("epochs")
    row["train_time_s"] = metrics.get("wall_time_s")
    latency = list(prof.get("latency") or []) + list((files["export"] or {}).get("latency") or [])
    for r in latency:
        row[latency_key(r)] = r.get("median_ms")
    for r in prof.get("budget") or []:
        row[budget_key(r["scenario"], r["device"], r["precision"])] = _verdict(r)
    return row


def latency_key(r: dict) -> str:
    """Column of a latency row: ``ms <runtime> <device type> <precision> b<batch>``."""
    return f"ms {r.get('runtime')} {r.get('device_type')} {r.get('precision')} b{r.get('batch')}"


def budget_key(scenario: str, device: str, precision: str) -> str:
    return f"{scenario} {device} {precision}"


def _verdict(r: dict) -> str:
    text = f"{'fits' if r['fits'] else 'no'} {r['headroom_pct']:+.0f}%"
    if "measured_fps" in r:
        text += f" ({r['measured_fps']:.1f} fps measured)"
    return text


def _identity(config: dict, overrides: Sequence[str]) -> dict:
    """Model, backbone, width, init, data and resolution, from the config or the overrides."""
    given = dict(o.lstrip("+").split("=", 1) for o in overrides if "=" in o)
    model = config.get("model") or {}
    backbone = config.get("backbone") or model.get("backbone") or {}
    data, init = config.get("data") or {}, config.get("init") or {}
    target = str(model.get("_target_", ""))
    size = data.get("image_size")
    return {
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
            fix="pass a train runs/ or multiruns/ folder of segbench runs",
        )
    return sorted(rows, key=lambda r: (r["status"] != "ok", -(r["miou"] or -1.0), r["run"]))


def columns_of(rows: list[dict]) -> list[str]:
    """Every column, in a stable, readable order."""
    head = [
        "run",
        "status",
        "reason",
        "model",
        "backbone",
        "width",
        "init",
        "data",
        "resolution",
        "miou",
        "val_miou",
        "eval_miou",
        "eval_split",
        "params_m",
        "gflops",
        "epochs",
        "train_time_s",
    ]
    rest = sorted(
        {k for r in rows for k in r} - set(head),
        key=lambda k: (not k.startswith("iou_"), not k.startswith("ms "), k),
    )
    return head + rest
