"""The architecture comparison: every run's accuracy next to its cost and budget verdicts.

``python -m segbench.evaluation.report <runs or multirun dir> [--out DIR] [--classes road,car]``
(or ``segbench report ...``) scans run directories at any depth. A run directory
holds ``config.yaml`` (the resolved training config) and ``metrics.json``
(training), optionally ``eval.json``, ``profile.json``, ``export.json`` and the
sweep's ``status.json`` (``{"status": "ok"|"failed"|"skipped", "reason", "overrides"}``).
It writes ``comparison.md``, ``comparison.csv``, ``pareto.png`` and, when a W&B
run is active, logs the table as ``comparison``.
"""

import argparse
import csv
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from segbench.errors import DataError
from segbench.evaluation.plots import plot_pareto
from segbench.evaluation.runs import budget_key, collect, columns_of
from segbench.files import write_text

log = logging.getLogger(__name__)

#: Budget columns the Markdown table shows by default: the DRIVE PX 2 targets of NUMBERS.md, urban.
DEFAULT_BUDGET = [
    ("urban", "drive_px2_igpu", "fp32"),
    ("urban", "drive_px2_igpu", "fp16"),
    ("urban", "drive_px2_dgpu", "fp32"),
    ("urban", "drive_px2_dgpu", "int8"),
]


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


def _one_line(text: str) -> str:
    """A multi-line reason (a ConfigError's problem, allowed, fix) as one table cell."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _pct(value) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{100 * value:.2f}"
    )


def _num(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


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
    write_text(
        files["md"], f"# Architecture comparison: {runs_dir}\n\n" + markdown(rows, classes, budget)
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
