"""The architecture comparison: every configuration's accuracy, over seeds, next to its cost.

``python -m segbench.evaluation.report <runs or multirun dir> [--out DIR] [--classes road,car]``
(or ``segbench report ...``) scans run directories at any depth. A run directory
holds ``config.yaml`` (the resolved training config) and ``metrics.json``
(training), optionally ``eval.json``, ``profile.json``, ``export.json`` and the
sweep's ``status.json`` (``{"status": "ok"|"failed"|"skipped", "reason", "overrides"}``).
Runs that differ only in ``seed`` are one configuration (:mod:`.aggregate`): mean
and spread, ranked only where the seeds separate them. It writes
``comparison.md`` (configurations, then every run), ``comparison.csv`` (every
run, every column), ``comparison_configs.csv``, ``pareto.png``, ``curves.png``
(learning curves) and, when a W&B run is active, logs the tables as
``comparison`` and ``comparison_configs``.
"""

import argparse
import csv
import io
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from segbench.errors import DataError
from segbench.evaluation.aggregate import aggregate, config_columns
from segbench.evaluation.curves import plot_curves
from segbench.evaluation.plots import plot_pareto
from segbench.evaluation.runs import collect, columns_of
from segbench.evaluation.tables import budget_columns, configs_table, notes, runs_table
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
    configs: list[dict] | None = None,
    images: Sequence[str] = (),
) -> str:
    """Configurations (seeds aggregated, ranked where separated), notes, pictures, every run."""
    configs = aggregate(rows) if configs is None else configs
    budget_cols = budget_columns(rows, budget)
    lines = []
    if configs:
        lines += ["## Configurations (over seeds)", ""]
        lines += configs_table(configs, classes, budget_cols) + [""]
    lines += notes(rows) + [""]
    lines += [f"![{name}]({name})" for name in images] + ([""] if images else [])
    lines += ["## Runs", ""] + runs_table(rows, classes, budget_cols)
    return "\n".join(lines) + "\n"


def write_report(runs_dir: Path, out_dir: Path | None = None) -> dict[str, Path]:
    """Writes the comparison (Markdown, CSVs, Pareto plot, learning curves) for ``runs_dir``.

    Logs the tables to W&B as ``comparison`` and ``comparison_configs`` when a
    W&B run is active.

    Args:
        runs_dir: A runs or multirun folder (run directories at any depth).
        out_dir: Where the files go (default: ``runs_dir``).

    Returns:
        The written files by kind: ``md``, ``csv``, ``configs_csv`` and (when a plot
        was possible) ``pareto`` and ``curves``.
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
    configs = aggregate(rows)
    files = {
        "md": out_dir / "comparison.md",
        "csv": out_dir / "comparison.csv",
        "configs_csv": out_dir / "comparison_configs.csv",
    }
    for kind, plot in (("pareto", plot_pareto), ("curves", plot_curves)):
        if configs and (path := plot(configs, out_dir / f"{kind}.png")):
            files[kind] = path
    images = [files[k].name for k in ("pareto", "curves") if k in files]
    md = markdown(rows, classes, budget, configs, images)
    write_text(files["md"], f"# Architecture comparison: {runs_dir}\n\n{md}")
    write_text(files["csv"], _csv(rows, columns_of(rows)))
    write_text(files["configs_csv"], _csv(configs, config_columns(configs)))
    _log_wandb({"comparison": rows, "comparison_configs": configs})
    log.info("%d runs -> %s", len(rows), ", ".join(map(str, files.values())))
    return files


def _csv(rows: list[dict], cols: list[str]) -> str:
    """The rows as CSV text (lists as "a; b")."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=cols, restval="", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow(
            {k: "; ".join(map(str, v)) if isinstance(v, list) else v for k, v in r.items()}
        )
    return out.getvalue()


def _log_wandb(tables: dict[str, list[dict]]) -> None:
    wandb = sys.modules.get("wandb")  # no W&B run can be active if wandb was never imported
    if wandb is None or wandb.run is None:
        return
    for name, rows in tables.items():
        every = columns_of(rows) if name == "comparison" else config_columns(rows)
        cols = [c for c in every if any(c in r for r in rows)]
        data = [[_cell(r.get(c)) for c in cols] for r in rows]
        wandb.run.log({name: wandb.Table(columns=cols, data=data)})


def _cell(value):
    return "; ".join(map(str, value)) if isinstance(value, list) else value


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
