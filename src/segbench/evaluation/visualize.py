"""Pictures of an evaluation: colour-coded label maps, overlay grids, the confusion matrix."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

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
            ids = labels.cpu().numpy().astype(np.int64)
            valid = (ids >= 0) & (ids < len(meta["colors"])) & (ids != meta["ignore_index"])
            color = colorize(labels, meta["colors"], meta["ignore_index"]).astype(np.float32)
            cells.append(np.where(valid[..., None], (1 - alpha) * rgb + alpha * color, rgb))
        panels.append(np.concatenate(cells, axis=1))
    return np.stack(panels).round().astype(np.uint8)


def overlay_grid(
    images: torch.Tensor,
    targets: torch.Tensor,
    preds: torch.Tensor,
    meta: dict,
    path: Path,
    alpha: float = 0.6,
) -> Path:
    """Writes :func:`overlay_panels` as one PNG, a row per sample."""
    grid = np.concatenate(list(overlay_panels(images, targets, preds, meta, alpha)), axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
