"""Pictures of a comparison: the accuracy-vs-cost Pareto plot.

One point per configuration (its seeds' mean mIoU, error bar = std across
seeds, area ~ parameters). The cost axis is measured latency when every
configuration was timed on one device, else GFLOPs (hardware-free), and the
plot says which and why; latency points whose timing was noisy are drawn hollow.
"""

import logging
import math
import statistics
from pathlib import Path

log = logging.getLogger(__name__)

LATENCY = "ms pytorch cpu fp32 b1"


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower cost (x) and higher mIoU (y)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def cost_axis(configs: list[dict]) -> tuple[str, str, str]:
    """(key, axis label, reason): latency when all were timed on one device, else GFLOPs."""
    timed = [c for c in configs if c.get(LATENCY)]
    devices = {c.get(f"{LATENCY} device") for c in timed}
    noisy = sum(bool(c.get(f"{LATENCY} noisy")) for c in timed)
    if timed and len(timed) == len(configs) and len(devices) == 1 and 2 * noisy <= len(timed):
        device = devices.pop() or "CPU"
        load = max((c.get(f"{LATENCY} load/cpu") or 0 for c in timed), default=0)
        return (
            LATENCY,
            f"latency, ms (PyTorch eager fp32, batch 1, {device})",
            "x = measured latency: every configuration was timed on this one CPU"
            + (f"; {noisy} noisy (hollow)" if noisy else "")
            + (f"; load average up to {load:.1f} per CPU while timing" if load > 1 else ""),
        )
    if not timed or len(timed) < len(configs):
        why = f"{len(configs) - len(timed)} of {len(configs)} configurations have no CPU latency"
    elif len(devices) > 1:
        why = f"latencies come from {len(devices)} different CPUs"
    else:
        why = f"{noisy} of {len(timed)} latencies are noisy"
    return "gflops", "GFLOPs per frame", f"x = GFLOPs (hardware-free): {why}"


def title_of(configs: list[dict]) -> str:
    """Dataset, resolution, epochs, seeds and training device of the compared runs."""

    def values(key: str) -> str:
        return "/".join(sorted({str(c.get(key)) for c in configs if c.get(key) not in (None, "")}))

    n = sorted({c["n"] for c in configs})
    seeds = f"{n[0]}" if len(n) == 1 else f"{n[0]}-{n[-1]}"
    return (
        f"{values('data') or 'data ?'} {values('resolution')}, {values('epochs') or '?'} epochs, "
        f"{seeds} seed{'s' if n[-1] > 1 else ''} per configuration; "
        f"trained on {values('device') or '?'}"
    )


def plot_pareto(configs: list[dict], path: Path) -> Path | None:
    """mIoU (mean over seeds, +/- std) against cost; the Pareto front of the means marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_key, x_label, reason = cost_axis(configs)
    ok = [c for c in configs if c.get(x_key) and c.get("miou_mean") is not None]
    if not ok:
        log.warning("no configuration has mIoU and %s: no Pareto plot", x_key)
        return None
    points = [(c[x_key], 100 * c["miou_mean"]) for c in ok]
    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (c, (x, y)) in enumerate(zip(ok, points, strict=True)):
        noisy = x_key == LATENCY and bool(c.get(f"{LATENCY} noisy"))
        color = "tab:red" if i in front else "tab:blue"
        yerr = 100 * c["miou_std"] if c.get("miou_std") is not None else None
        ax.errorbar(x, y, yerr=yerr, fmt="none", ecolor=color, alpha=0.5, capsize=3)
        size = 30 + 12 * (c.get("params_m") or 0)
        ax.scatter(
            x,
            y,
            s=size,
            alpha=0.6,
            facecolors="none" if noisy else color,
            edgecolors=color,
            linewidths=1.5,
        )
        same = sum(1 for q in points[:i] if math.isclose(q[0], x) and math.isclose(q[1], y))
        text = c["name"] + (" (noisy)" if noisy else "")
        _label(ax, text, (x, y), points, math.sqrt(size) / 2, same)
    fx, fy = zip(*sorted(points[i] for i in front), strict=True)
    ax.step(fx, fy, where="post", color="tab:red", lw=1, label="Pareto front (means)")
    xs = [p[0] for p in points]
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("mIoU, % (mean over seeds, bar = std)")
    ax.set_title(f"{title_of(configs)}\n{reason}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    ax.margins(x=0.08, y=0.1)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _label(ax, text: str, xy: tuple, points: list, radius: float, stacked: int = 0) -> None:
    """Labels to the right of a point left of the median x, else to its left (stays inside),
    clear of the marker (``radius`` in points); the ``stacked``-th label of one position
    goes one line lower."""
    right_half = xy[0] > statistics.median(p[0] for p in points)
    gap = radius + 3
    ax.annotate(
        text,
        xy,
        fontsize=7,
        xytext=(-gap if right_half else gap, 4 - 10 * stacked),
        textcoords="offset points",
        ha="right" if right_half else "left",
    )
