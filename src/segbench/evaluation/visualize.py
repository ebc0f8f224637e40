"""Pictures of an evaluation: colour-coded label maps, overlay grids, the confusion matrix."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from segbench.files import atomic_write

#: Colour of ignored pixels in label pictures.
IGNORE_COLOR = (0, 0, 0)


def colorize(
    labels: torch.Tensor, colors: Sequence[Sequence[int]], ignore_index: int
) -> np.ndarray:
    """Label map ``(H, W)`` -> RGB ``(H, W, 3)`` uint8 in the dataset's colours (ignored: black)."""
    palette = np.array([*map(tuple, colors), IGNORE_COLOR], dtype=np.uint8)
    ids = labels.cpu().numpy().astype(np.int64)
    ids = np.where((ids < 0) | (ids >= len(colors)) | (ids == ignore_index), len(colors), ids)
    return palette[ids]


def denormalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised image ``(3, H, W)`` -> RGB ``(H, W, 3)`` uint8."""
    mean_t = torch.tensor(mean, dtype=image.dtype)[:, None, None]
    std_t = torch.tensor(std, dtype=image.dtype)[:, None, None]
    rgb = (image.cpu() * std_t + mean_t).clamp(0, 1).permute(1, 2, 0).numpy()
    return (rgb * 255).round().astype(np.uint8)


def overlay_panels(
    images: torch.Tensor,
    targets: torch.Tensor,
    preds: torch.Tensor,
    meta: dict,
    alpha: float = 0.5,
) -> np.ndarray:
    """``[image | ground truth over image | prediction over image]`` per sample.

    The one renderer of label overlays (evaluation's ``overlays.png``, the
    loggers' prediction images). Label colours are blended over the image;
    ignored or out-of-range pixels are left uncoloured, so the image shows through.
    Label maps of another size (ERFNet's encoder-only stage predicts at 1/8) are
    shown scaled to the image (nearest).

    Args:
        images: Normalised images ``(N, 3, H, W)``.
        targets: Ground-truth label maps ``(N, H, W)`` (the ignore index allowed).
        preds: Predicted label maps ``(N, H, W)``.
        meta: Dataset facts (``colors``, ``mean``, ``std``, ``ignore_index``).
        alpha: Opacity of the label colours.

    Returns:
        ``(N, H, 3 * W, 3)`` uint8 RGB.
    """
    panels = []
    for image, target, pred in zip(images, targets, preds, strict=True):
        rgb = denormalize(image, meta["mean"], meta["std"]).astype(np.float32)
        cells = [rgb]
        for labels in (target, pred):
            labels = at_size(labels, rgb.shape[:2])
            ids = labels.cpu().numpy().astype(np.int64)
            valid = (ids >= 0) & (ids < len(meta["colors"])) & (ids != meta["ignore_index"])
            color = colorize(labels, meta["colors"], meta["ignore_index"]).astype(np.float32)
            cells.append(np.where(valid[..., None], (1 - alpha) * rgb + alpha * color, rgb))
        panels.append(np.concatenate(cells, axis=1))
    return np.stack(panels).round().astype(np.uint8)


def at_size(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """A label map ``(H', W')`` at ``size`` ``(H, W)``, nearest (unchanged if it already is)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    scaled = torch.nn.functional.interpolate(labels[None, None].float(), size=tuple(size))
    return scaled[0, 0].to(labels.dtype)


#: Column titles of :func:`overlay_panels`' three cells.
PANEL_TITLES = ("image", "ground truth", "prediction")


def overlay_figure(
    images: torch.Tensor,
    targets: torch.Tensor,
    preds: torch.Tensor,
    meta: dict,
    alpha: float = 0.6,
    row_labels: Sequence[str] | None = None,
):
    """:func:`overlay_panels` as a matplotlib figure: column titles and a colour legend.

    The grid is shown at (at least) its pixel size, a row per sample; the legend
    names each class in its colour, and says that ignored pixels are left uncoloured.

    Args:
        images, targets, preds, meta, alpha: as :func:`overlay_panels`.
        row_labels: One label per row (e.g. the sample's index in the split), or None.

    Returns:
        The ``matplotlib.figure.Figure`` (close it after saving).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    panels = overlay_panels(images, targets, preds, meta, alpha)
    grid = np.concatenate(list(panels), axis=0)
    n, h, w3 = panels.shape[:3]
    names = meta.get("class_names") or [str(i) for i in range(len(meta["colors"]))]
    handles = [
        Patch(facecolor=np.array(c) / 255, edgecolor="black", label=str(name))
        for name, c in zip(names, meta["colors"], strict=True)
    ]
    handles.append(Patch(facecolor="none", edgecolor="black", label="ignored (uncoloured)"))
    ncol = min(len(handles), 6)
    width = max(w3 / 100, 9.0)  # inches at 100 dpi; small images are scaled up to stay legible
    scale = width * 100 / w3
    legend_h = 0.35 * (-(-len(handles) // ncol)) + 0.3
    left = 0.8 if row_labels is not None else 0.0  # inches for the row labels
    grid_h = n * h * scale / 100
    fig = plt.figure(figsize=(width + left, grid_h + 0.4 + legend_h), dpi=100)
    fig_w, fig_h = fig.get_figwidth(), fig.get_figheight()
    ax = fig.add_axes((left / fig_w, legend_h / fig_h, width / fig_w, grid_h / fig_h))
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([(i + 0.5) * w3 / 3 for i in range(3)], PANEL_TITLES, fontsize=11)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    if row_labels is not None:
        ax.set_yticks([(i + 0.5) * h for i in range(n)], [str(r) for r in row_labels], fontsize=8)
    else:
        ax.set_yticks([])
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=9, frameon=False)
    return fig


def overlay_grid(
    images: torch.Tensor,
    targets: torch.Tensor,
    preds: torch.Tensor,
    meta: dict,
    path: Path,
    alpha: float = 0.6,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Writes :func:`overlay_figure` (a row per sample, titles, colour legend) as a PNG."""
    import matplotlib.pyplot as plt

    fig = overlay_figure(images, targets, preds, meta, alpha, row_labels)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path


def plot_confusion_matrix(confmat: torch.Tensor, class_names: Sequence[str], path: Path) -> Path:
    """Writes the row-normalised confusion matrix (rows = ground truth) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = confmat.double()
    rows = counts.sum(1, keepdim=True)
    norm = torch.where(rows > 0, counts / rows.clamp(min=1), torch.zeros_like(counts)).numpy()
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(2 + 0.55 * n, 1.5 + 0.5 * n))
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=60, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    if n <= 25:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    f"{norm[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the ground-truth row")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path
