"""The architecture comparison: every run's accuracy next to its cost and budget verdicts.

``python -m segbench.report <runs or multirun dir> [--out DIR] [--classes road,car]``
(or ``segbench report ...``) scans run directories at any depth. A run directory
holds ``config.yaml`` (the resolved training config) and ``metrics.json``
(training), optionally ``eval.json``, ``profile.json``, ``export.json`` and the
sweep's ``status.json`` (``{"status": "ok"|"failed"|"skipped", "reason", "overrides"}``).
It writes ``comparison.md``, ``comparison.csv``, ``pareto.png`` and, when a W&B
run is active, logs the table as ``comparison``.
"""

import argparse
import csv
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from segbench.errors import DataError

log = logging.getLogger(__name__)

RUN_FILES = ("metrics.json", "status.json")
#: Budget columns the Markdown table shows by default: the DRIVE PX 2 targets of NUMBERS.md, urban.
DEFAULT_BUDGET = [
    ("urban", "drive_px2_igpu", "fp32"),
    ("urban", "drive_px2_igpu", "fp16"),
    ("urban", "drive_px2_dgpu", "fp32"),
    ("urban", "drive_px2_dgpu", "int8"),
]


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


def markdown(
    rows: list[dict],
    classes: Sequence[str] = (),
    budget: Sequence[tuple[str, str, str]] = tuple(DEFAULT_BUDGET),
) -> str:
    """The comparison table: identity, mIoU, chosen classes, cost, batch-1 latency, budgets."""
    latency = sorted({k for r in rows for k in r if k.startswith("ms ") and k.endswith(" b1")})
    budget_cols = [budget_key(*b) for b in budget if any(budget_key(*b) in r for r in rows)]
    cols = (
        ["model", "backbone", "width", "init", "data", "resolution", "mIoU"]
        + [f"IoU {c}" for c in classes]
        + ["params M", "GFLOPs", "train s"]
        + [k.removesuffix(" b1") for k in latency]
        + budget_cols
        + ["status"]
    )
    lines = [
        "| " + " | ".join(cols) + " |",
        "|"
        + "|".join(
            "---:"
            if c in ("mIoU", "params M", "GFLOPs", "train s") or c.startswith(("IoU", "ms"))
            else "---"
            for c in cols
        )
        + "|",
    ]
    for r in rows:
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {_one_line(r['reason'])}"
        cells = (
            [
                r["model"],
                r["backbone"],
                r["width"],
                r["init"],
                r["data"],
                r["resolution"],
                _pct(r["miou"]),
            ]
            + [_pct(r.get(f"iou_{c}")) for c in classes]
            + [_num(r["params_m"], 2), _num(r["gflops"], 2), _num(r["train_time_s"], 0)]
            + [_num(r.get(k), 1) for k in latency]
            + [r.get(k, "–") for k in budget_cols]
            + [status]
        )
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    notes = [
        "",
        "mIoU: evaluate.py's score where the run has eval.json, else the best "
        "val/miou of training (%). GFLOPs: one frame at the run's resolution "
        "(1 MAC = 2 FLOPs). Latency: median ms at batch 1 per runtime, device, precision. "
        "Budget: GOP/frame x cameras x fps vs the device's GOP/s (headroom %).",
    ]
    return "\n".join(lines + notes) + "\n"


def _pct(value) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{100 * value:.2f}"
    )


def _num(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower cost (x) and higher mIoU (y)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(rows: list[dict], path: Path) -> Path | None:
    """mIoU against batch-1 CPU latency (GFLOPs where some run lacks it); size = params."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok" and r["miou"] is not None]
    x_key = "ms pytorch cpu fp32 b1"
    if not ok or not all(r.get(x_key) for r in ok):
        x_key = "gflops"
    ok = [r for r in ok if r.get(x_key)]
    if not ok:
        log.warning("no run has mIoU and %s: no Pareto plot", x_key)
        return None
    points = [(r[x_key], 100 * r["miou"]) for r in ok]
    front = pareto_front(points)
    sizes = [30 + 12 * (r["params_m"] or 0) for r in ok]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(
        *zip(*points, strict=True),
        s=sizes,
        alpha=0.6,
        c=["tab:red" if i in front else "tab:blue" for i in range(len(ok))],
    )
    fx, fy = zip(*sorted(points[i] for i in front), strict=True)
    ax.step(fx, fy, where="post", color="tab:red", lw=1, label="Pareto front")
    for r, (x, y) in zip(ok, points, strict=True):
        label = f"{r['model']} {r['backbone']}{'' if r['width'] in ('', None) else ' ' + str(r['width'])}"
        ax.annotate(label, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(
        "latency, ms (PyTorch, CPU, fp32, batch 1)"
        if x_key.startswith("ms")
        else "GFLOPs per frame"
    )
    ax.set_ylabel("mIoU, %")
    ax.set_title("accuracy vs cost (point area ~ parameters)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(runs_dir: Path, out_dir: Path | None = None) -> dict[str, Path]:
    """Writes comparison.md, comparison.csv and pareto.png for the runs under ``runs_dir``.

    Logs the table to W&B as ``comparison`` when a W&B run is active.

    Args:
        runs_dir: A runs or multirun folder (run directories at any depth).
        out_dir: Where the files go (default: ``runs_dir``).

    Returns:
        The written files by kind: ``md``, ``csv`` and (when a plot was possible) ``pareto``.
    """
    return build_report(Path(runs_dir), Path(out_dir) if out_dir else None)


def build_report(
    runs_dir: Path,
    out_dir: Path | None = None,
    classes: Sequence[str] = (),
    budget: Sequence[tuple[str, str, str]] = tuple(DEFAULT_BUDGET),
) -> dict[str, Path]:
    """:func:`write_report` with the Markdown table's class and budget columns chosen."""
    out_dir = out_dir or runs_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = collect(runs_dir)
    cols = columns_of(rows)
    files = {"md": out_dir / "comparison.md", "csv": out_dir / "comparison.csv"}
    files["md"].write_text(
        f"# Architecture comparison: {runs_dir}\n\n" + markdown(rows, classes, budget)
    )
    with files["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols, restval="")
        writer.writeheader()
        writer.writerows(rows)
    pareto = plot_pareto(rows, out_dir / "pareto.png")
    if pareto:
        files["pareto"] = pareto
    _log_wandb(rows, cols)
    log.info("%d runs -> %s", len(rows), ", ".join(map(str, files.values())))
    return files


def _log_wandb(rows: list[dict], cols: list[str]) -> None:
    wandb = sys.modules.get("wandb")  # no W&B run can be active if wandb was never imported
    if wandb is None or wandb.run is None:
        return
    data = [
        [r.get(c) if not isinstance(r.get(c), list) else str(r.get(c)) for c in cols] for r in rows
    ]
    wandb.run.log({"comparison": wandb.Table(columns=cols, data=data)})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segbench report", description=__doc__.split("\n")[0])
    parser.add_argument("runs_dir", type=Path, help="runs or multirun folder")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: runs_dir)")
    parser.add_argument("--classes", default="", help="comma-separated classes whose IoU to show")
    parser.add_argument(
        "--budget",
        nargs="*",
        default=None,
        metavar="SCENARIO:DEVICE:PRECISION",
        help="budget columns of the Markdown table (default: urban on DRIVE PX 2)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    budget = DEFAULT_BUDGET if args.budget is None else [tuple(b.split(":")) for b in args.budget]
    if any(len(b) != 3 for b in budget):
        parser.error("--budget takes SCENARIO:DEVICE:PRECISION, e.g. urban:drive_px2_igpu:fp16")
    classes = [c for c in args.classes.split(",") if c]
    try:
        files = build_report(args.runs_dir, args.out, classes, budget)
    except DataError as err:
        raise SystemExit(f"error: {err}") from None
    print(files["md"].read_text())
    for kind, path in files.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()


def _one_line(text: str) -> str:
    """A multi-line reason (a ConfigError's problem, allowed, fix) as one table cell."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())
