"""Learning curves of a comparison: val mIoU per epoch, every seed of every configuration.

A ranking holds for the budget it was measured at; the curves show who was
still improving when the budget ran out (metrics.json ``history``).
"""

import logging
from pathlib import Path

from segbench.evaluation.plots import title_of

log = logging.getLogger(__name__)


def plot_curves(configs: list[dict], path: Path) -> Path | None:
    """One colour per configuration, one line per seed; None when no run has a history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    with_curves = [c for c in configs if any(r.get("_history") for r in c["_runs"])]
    if not with_curves:
        log.warning("no run has a val/miou history: no learning curves")
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.get_cmap("tab10" if len(with_curves) <= 10 else "tab20").colors
    for i, c in enumerate(with_curves):
        color = colors[i % len(colors)]
        for j, run in enumerate(r for r in c["_runs"] if r.get("_history")):
            epochs, scores = zip(*sorted(run["_history"]), strict=True)
            label = f"{c['name']} (n={c['n']})" if j == 0 else None
            ax.plot(epochs, [100 * s for s in scores], color=color, lw=1, alpha=0.7, label=label)
            ax.plot(epochs[-1], 100 * scores[-1], "o", color=color, ms=3)
    budgets = {c["epochs"] for c in with_curves if c.get("epochs")}
    for epochs in budgets:
        ax.axvline(epochs, color="grey", lw=0.8, ls=":")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (dotted: the epoch budget)")
    ax.set_ylabel("val mIoU, %")
    ax.set_title(f"{title_of(with_curves)}\nval mIoU per epoch, one line per seed", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
