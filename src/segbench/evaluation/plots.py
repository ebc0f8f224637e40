"""Pictures of a comparison: the accuracy-vs-cost Pareto plot."""

import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)


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
