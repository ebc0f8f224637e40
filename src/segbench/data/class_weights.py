"""Class weights against imbalance, from the label statistics of a training split.

Two published schemes, both with void (the ignore index) left out:

- ``median_freq`` (Eigen & Fergus; SegNet): ``freq(c)`` = pixels of class c
  divided by the pixels of the images in which c appears, and
  ``w(c) = median(freq) / freq(c)``.
- ``enet`` (Paszke et al.): ``w(c) = 1 / ln(c0 + p(c))`` with ``p(c)`` the share
  of class c among the labelled pixels and ``c0 = 1.02``.

The counts are cached per dataset and split under ``cache_dir``, keyed on the
mask files' names, sizes and modification times, so they are recomputed when
a file changes.
"""

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segbench.data.dataset import SegmentationDataset
from segbench.errors import ConfigError
from segbench.files import write_json

log = logging.getLogger(__name__)

SCHEMES = ("none", "median_freq", "enet")


def label_counts(dataset: SegmentationDataset) -> tuple[np.ndarray, np.ndarray]:
    """Pixel statistics of a split's masks (train ids, void excluded).

    Returns:
        ``counts`` ``(C,)``: pixels of each class; ``image_pixels`` ``(C,)``:
        total pixels of the images in which each class appears.
    """
    counts = np.zeros(dataset.num_classes, dtype=np.int64)
    image_pixels = np.zeros(dataset.num_classes, dtype=np.int64)
    for sample in dataset.samples:
        mask = dataset.load_mask(sample)
        if mask is None:
            continue
        per_class = np.bincount(mask.ravel(), minlength=256)[: dataset.num_classes]
        counts += per_class
        image_pixels[per_class > 0] += mask.size
    return counts, image_pixels


def cached_label_counts(
    dataset: SegmentationDataset, cache_dir: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`label_counts`, read from ``cache_dir`` when the split's files are unchanged."""
    if cache_dir is None:
        return label_counts(dataset)
    stats = [(str(s.mask), *_stat(s.mask)) for s in dataset.samples if s.mask is not None]
    key = json.dumps([dataset.cache_key(), stats])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{type(dataset).__name__.lower()}-{dataset.split}-{digest}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        log.info("class statistics of %s/%s from %s", dataset.root, dataset.split, path)
        return np.array(cached["counts"]), np.array(cached["image_pixels"])
    counts, image_pixels = label_counts(dataset)
    # Atomic: parallel runs never read half a file.
    write_json(path, {"counts": counts.tolist(), "image_pixels": image_pixels.tolist()})
    return counts, image_pixels


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def median_frequency_weights(counts: np.ndarray, image_pixels: np.ndarray) -> np.ndarray:
    """``median(freq) / freq(c)``; a class absent from every image gets weight 0."""
    present = image_pixels > 0
    freq = np.zeros(len(counts))
    freq[present] = counts[present] / image_pixels[present]
    weights = np.zeros(len(counts))
    weights[present] = np.median(freq[present]) / freq[present]
    return weights


def enet_weights(counts: np.ndarray, c: float = 1.02) -> np.ndarray:
    """``1 / ln(c + p(c))`` with ``p`` the share of each class among labelled pixels."""
    return 1.0 / np.log(c + counts / max(int(counts.sum()), 1))


def class_weights(
    scheme: str | Sequence[float] | None,
    dataset: SegmentationDataset | None,
    num_classes: int,
    cache_dir: Path | None = None,
) -> list[float] | None:
    """Resolves ``loss.class_weights`` to one weight per class, or None.

    Args:
        scheme: ``none``/None, ``median_freq``, ``enet`` or an explicit list.
        dataset: The training split (needed by the computed schemes).
        num_classes: Number of classes (an explicit list must match it).
        cache_dir: Where label statistics are cached (None: no cache).
    """
    if scheme is None or (isinstance(scheme, str) and scheme == "none"):
        return None
    if not isinstance(scheme, str):
        weights = [float(w) for w in scheme]
        if len(weights) != num_classes or min(weights) < 0:
            raise ConfigError(
                "loss.class_weights",
                weights,
                f"need {num_classes} non-negative weights, one per class",
                fix="give one weight per class, or a scheme: " + ", ".join(SCHEMES),
            )
        return weights
    if scheme not in SCHEMES:
        raise ConfigError(
            "loss.class_weights",
            scheme,
            "unknown weighting scheme",
            allowed=SCHEMES,
            fix="or give a list with one weight per class",
        )
    counts, image_pixels = cached_label_counts(dataset, cache_dir)
    weights = (
        median_frequency_weights(counts, image_pixels)
        if scheme == "median_freq"
        else enet_weights(counts)
    )
    log.info(
        "class weights (%s) from %s/%s: %s",
        scheme,
        dataset.root,
        dataset.split,
        np.round(weights, 4).tolist(),
    )
    return weights.tolist()
