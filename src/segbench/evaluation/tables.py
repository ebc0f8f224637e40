"""The comparison's Markdown tables: configurations (seeds aggregated) and single runs."""

import math
from collections.abc import Sequence

from segbench.evaluation.aggregate import MIN_SEEDS, spread
from segbench.evaluation.runs import budget_key
from segbench.runtimes.latency import NOISY_SPREAD

IDENTITY_COLS = ["model", "backbone", "width", "init", "data", "resolution"]


def configs_table(
    configs: list[dict], classes: Sequence[str] = (), budget_cols: Sequence[str] = ()
) -> list[str]:
    """Configurations ranked; intervals that overlap share a rank (``1=``); each with its budget."""
    test = any(c.get("test_n") for c in configs)
    runtimes = _runtime_cols(configs)
    latency = _latency_cols(configs)
    variant = any(c.get("variant") for c in configs)
    cols = (
        ["rank", *IDENTITY_COLS, *(["variant"] if variant else [])]
        + ["seeds", "mIoU mean ± std", "min..max", "not separated from"]
        + (["test mIoU"] if test else [])
        + [f"IoU {c}" for c in classes]
        + [f"mIoU {k.removeprefix('miou ')}" for k in runtimes]
        + ["gain last 25%", "epochs", "batch", "images seen", "train s", "device"]
        + ["params M", "GFLOPs", *(k.removesuffix(" b1") for k in latency), *budget_cols]
    )
    lines = _header(cols)
    for c in configs:
        tie = "=" if c["not_separated_from"] else ""
        std = "" if c["miou_std"] is None else f" ± {100 * c['miou_std']:.2f}"
        cells = (
            [
                f"{c['rank']}{tie}",
                *(c[k] for k in IDENTITY_COLS),
                *([c["variant"]] if variant else []),
            ]
            + [f"{c['seeds']} (n={c['n']})", f"{_pct(c['miou_mean'])}{std}"]
            + [f"{_pct(c['miou_min'])}..{_pct(c['miou_max'])}"]
            + [", ".join(c["not_separated_from"]) or "–"]
            + ([_mean_std(c, "test_miou")] if test else [])
            + [_pct(spread([r.get(f"iou_{n}") for r in c["_runs"]])["mean"]) for n in classes]
            + [_runtime_cell(c, k) for k in runtimes]
            + [_num(c["gain_last_quarter"], 2), c["epochs"], c.get("batch_size") or "–"]
            + [_num(c["images_seen"], 0), _num(c["train_time_s"], 0), c["device"] or "–"]
            + [_num(c["params_m"], 2), _num(c["gflops"], 2)]
            + [_latency_cell(c, k) for k in latency]
            + [_first(c, k) or "–" for k in budget_cols]
        )
        lines.append(_row(cells))
    return lines


def runs_table(
    rows: list[dict], classes: Sequence[str] = (), budget_cols: Sequence[str] = ()
) -> list[str]:
    """Every run, failed and skipped ones with their reason."""
    test = any(r.get("test_miou") is not None for r in rows)
    runtimes = _runtime_cols(rows)
    latency = _latency_cols(rows)
    cols = (
        [*IDENTITY_COLS, "seed", "mIoU", *(["test mIoU"] if test else [])]
        + [f"IoU {c}" for c in classes]
        + [f"mIoU {k.removeprefix('miou ')}" for k in runtimes]
        + ["epochs", "images seen", "train s", "device", "params M", "GFLOPs"]
        + [k.removesuffix(" b1") for k in latency]
        + [*budget_cols, "status"]
    )
    lines = _header(cols)
    for r in rows:
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {one_line(r['reason'])}"
        cells = (
            [*(r[k] for k in IDENTITY_COLS), "–" if r["seed"] is None else r["seed"]]
            + [_pct(r["miou"]), *([_pct(r.get("test_miou"))] if test else [])]
            + [_pct(r.get(f"iou_{c}")) for c in classes]
            + [_runtime_cell(r, k) for k in runtimes]
            + [r["epochs"] or "–", _num(r["images_seen"], 0), _num(r["train_time_s"], 0)]
            + [r["device"] or "–", _num(r["params_m"], 2), _num(r["gflops"], 2)]
            + [_latency_cell(r, k) for k in latency]
            + [r.get(k, "–") for k in budget_cols]
            + [status]
        )
        lines.append(_row(cells))
    return lines


def notes(rows: list[dict]) -> list[str]:
    """What the figures are and the rules behind ``rank`` and ``noisy``."""
    thresholds = {
        v
        for r in rows
        for lat in r.get("_latency", {}).values()
        if (v := lat.get("noisy_threshold"))
    } or {NOISY_SPREAD}
    limit = "/".join(f"{100 * t:.0f}%" for t in sorted(thresholds))
    return [
        "- **mIoU**: evaluate.py's score where the run has eval.json, else the best val/miou "
        "of training (%); **test mIoU**: the best checkpoint on the test split (`test_split`), "
        "never used for selection.",
        "- **seeds**: runs differing only in `seed` form one configuration; mean ± sample std "
        "(n - 1) and min..max over its seeds.",
        f"- **rank**: configurations of the same data, resolution and epochs are *separated* "
        f"when each has >= {MIN_SEEDS} seeds and their min..max ranges do not overlap (every "
        "seed of one above every seed of the other); rank = 1 + the number separated from it "
        "and above it. `=` marks a rank shared with the configurations in *not separated "
        "from*: the sweep does not order them. Fewer seeds are never separated.",
        "- **budget**: epochs (configured), batch, images seen (training samples over all "
        "ranks), wall time of training (s) and its device; **gain last 25%**: val mIoU points "
        "gained over the last quarter of the validations, mean over seeds (positive: still "
        "improving when the budget ran out; see curves.png).",
        "- **latency**: median ms at batch 1 per runtime, device, precision (median of round "
        f"medians; across seeds, the median of the runs'); (x%) = (max - min) / median of the "
        f"round medians and of the runs' medians; **noisy**: spread over {limit}; "
        "load x/CPU shown where the 1-minute load average exceeded the CPU count.",
        "- **mIoU <runtime>**: export.json's score of each exported runtime on its split, "
        "(delta vs PyTorch in points). GFLOPs: one frame at the run's resolution (1 MAC = 2 "
        "FLOPs). Budget: GOP/frame x cameras x fps vs the device's GOP/s (headroom %).",
    ]


def budget_columns(rows: list[dict], budget: Sequence[tuple[str, str, str]]) -> list[str]:
    return [budget_key(*b) for b in budget if any(budget_key(*b) in r for r in rows)]


def one_line(text: str) -> str:
    """A multi-line reason (a ConfigError's problem, allowed, fix) as one table cell."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _runtime_cols(rows: list[dict]) -> list[str]:
    """``miou <runtime> <precision>`` columns, PyTorch (the reference) first."""
    keys = {k for r in rows for k in r if k.startswith("miou ")}
    return sorted(keys, key=lambda k: (not k.startswith("miou pytorch"), k))


def _latency_cols(rows: list[dict]) -> list[str]:
    return sorted(
        {k for r in rows for k in r if k.startswith("ms ") and k.endswith(" b1") and r.get(k)}
    )


def _runtime_cell(row: dict, key: str) -> str:
    delta = row.get("delta " + key.removeprefix("miou "))
    return _pct(row.get(key)) + ("" if delta is None else f" ({delta:+.2f})")


def _latency_cell(row: dict, key: str) -> str:
    if not row.get(key):
        return "–"
    notes_ = []
    if (spread := row.get(f"{key} spread")) is not None:
        notes_.append(f"{100 * spread:.0f}%")
    if row.get(f"{key} noisy"):
        notes_.append("noisy")
    if (load := row.get(f"{key} load/cpu")) is not None and load > 1:
        notes_.append(f"load {load:.1f}/CPU")
    return f"{row[key]:.1f}" + (f" ({', '.join(notes_)})" if notes_ else "")


def _mean_std(c: dict, key: str) -> str:
    std = c.get(f"{key}_std")
    return _pct(c.get(f"{key}_mean")) + ("" if std is None else f" ± {100 * std:.2f}")


def _first(c: dict, key: str):
    """A value the runs of a configuration share (a budget verdict): the first run's."""
    return next((r[key] for r in c.get("_runs", []) if r.get(key) is not None), None)


def _header(cols: list[str]) -> list[str]:
    numeric = ("mIoU", "params M", "GFLOPs", "train s", "images seen", "epochs", "gain last 25%")
    right = ("IoU", "ms", "mIoU", "test mIoU")
    align = ["---:" if c in numeric or c.startswith(right) else "---" for c in cols]
    return ["| " + " | ".join(cols) + " |", "|" + "|".join(align) + "|"]


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"


def _pct(value) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{100 * value:.2f}"
    )


def _num(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"
