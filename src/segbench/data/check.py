"""Check a dataset before training: ``python -m segbench.data.check data=<name> data.root=...``.

Also ``segbench check ...``. Reads every file of every split the layout
defines and prints the sample count per split, the image sizes, the label
histogram per class (train ids, ignore index apart), the train split's
per-channel mean/std, and every problem found with its file name: missing
pair, orphan mask, duplicate name, empty, unreadable or truncated file, wrong
mask mode, size mismatch, unknown ids. Exit code 1 when there are problems.
Overrides follow Hydra (the train config's ``data`` group).
"""

import logging
import sys
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from segbench.config import CONFIG_DIR, check_group_overrides
from segbench.data.batching import MIXED_SIZES_FIX
from segbench.data.dataset import SegmentationDataset
from segbench.data.reading import SampleError
from segbench.errors import DataError, SegbenchError

log = logging.getLogger(__name__)


@dataclass
class SplitReport:
    """What the checker found in one split."""

    name: str
    samples: int = 0
    unlabelled: int = 0
    sizes: Counter = field(default_factory=Counter)
    files_of_size: dict = field(default_factory=dict)  # (W, H) -> the files of that size
    histogram: np.ndarray | None = None
    channel_sum: np.ndarray = field(default_factory=lambda: np.zeros(3))
    channel_sq: np.ndarray = field(default_factory=lambda: np.zeros(3))
    pixels: int = 0
    problems: list[SampleError] = field(default_factory=list)
    missing: str | None = None  # why the split could not be opened


def check_split(dataset: SegmentationDataset) -> SplitReport:
    """Reads every sample of ``dataset`` (built with ``on_bad_sample="skip"``) and reports."""
    report = SplitReport(dataset.split, samples=len(dataset.samples))
    report.problems.extend(dataset.problems)
    report.histogram = np.zeros(256, dtype=np.int64)
    for sample in dataset.samples:
        try:
            image, mask = dataset.load_pair(sample)
        except SampleError as err:
            report.problems.append(err)
            continue
        report.sizes[(image.shape[1], image.shape[0])] += 1
        report.files_of_size.setdefault((image.shape[1], image.shape[0]), []).append(sample.image)
        pixels = image.reshape(-1, 3).astype(np.float64) / 255.0
        report.channel_sum += pixels.sum(0)
        report.channel_sq += (pixels**2).sum(0)
        report.pixels += len(pixels)
        if sample.mask is None:
            report.unlabelled += 1
        else:
            report.histogram += np.bincount(mask.ravel(), minlength=256)
    if len(report.sizes) > 1:
        report.problems.append(mixed_sizes(dataset, report))
    return report


def mixed_sizes(dataset: SegmentationDataset, report: SplitReport) -> SampleError:
    """The problem of a split whose images (as the loader returns them) differ in size.

    The loader refuses such a batch (:func:`segbench.data.batching.collate`), so the
    checker reports it too, naming the files not of the most common size.
    """
    (common, _), *_ = report.sizes.most_common(1)
    odd = [
        f"{path.name} ({w}x{h})"
        for (w, h), paths in report.files_of_size.items()
        if (w, h) != common
        for path in paths
    ]
    return SampleError(
        dataset.root,
        "mixed_sizes",
        f"{dataset.split} images differ in size (WxH): most are {common[0]}x{common[1]}, but "
        + ", ".join(odd[:5])
        + (f" and {len(odd) - 5} more" if len(odd) > 5 else ""),
        fix=MIXED_SIZES_FIX,
    )


def check(data_cfg: DictConfig) -> list[SplitReport]:
    """Checks every split of the configured dataset; a missing train split is a problem."""
    datamodule = instantiate(data_cfg, augment=[])
    extra = {} if datamodule.mode is None else {"mode": datamodule.mode}
    factory = datamodule.dataset
    splits = getattr(getattr(factory, "func", factory), "splits", ("train", "val", "test"))
    reports = []
    for split in splits:
        try:
            dataset = factory(
                root=datamodule.root,
                split=split,
                num_classes=datamodule.num_classes,
                ignore_index=datamodule.ignore_index,
                transform=None,
                on_bad_sample="skip",
                **extra,
            )
            if datamodule.remap is not None:  # data.remap: report the target classes
                datamodule.remap.apply(dataset)
        except DataError as err:
            report = SplitReport(split, missing=str(err))
            if split == "train":
                report.problems.append(
                    SampleError(err.path, "missing_split", str(err).removeprefix(f"{err.path}: "))
                )
            reports.append(report)
            continue
        reports.append(check_split(dataset))
    return reports


def format_report(reports: list[SplitReport], class_names: list[str], ignore_index: int) -> str:
    """The human-readable report."""
    lines = []
    for r in reports:
        if r.missing:
            lines.append(f"[{r.name}] not available: {r.missing.splitlines()[0]}")
            continue
        lines.append(
            f"[{r.name}] {r.samples} samples"
            + (f" ({r.unlabelled} without labels)" if r.unlabelled else "")
        )
        sizes = ", ".join(f"{w}x{h}: {n}" for (w, h), n in r.sizes.most_common(5))
        lines.append(f"  image sizes (WxH): {sizes}" + (" ..." if len(r.sizes) > 5 else ""))
        total = int(r.histogram.sum())
        if total:
            lines.append("  label histogram (pixels, share):")
            for i, name in enumerate(class_names):
                lines.append(
                    f"    {i:>3} {name:<16} {r.histogram[i]:>14,} {r.histogram[i] / total:8.2%}"
                )
            lines.append(
                f"    {ignore_index:>3} {'(ignored)':<16} {r.histogram[ignore_index]:>14,} "
                f"{r.histogram[ignore_index] / total:8.2%}"
            )
        if r.pixels and r.name == "train":
            mean = r.channel_sum / r.pixels
            std = np.sqrt(np.maximum(r.channel_sq / r.pixels - mean**2, 0))
            lines.append(
                f"  RGB mean {np.round(mean, 3).tolist()} std {np.round(std, 3).tolist()} "
                "(for data.mean / data.std when not using a pretrained encoder's)"
            )
    problems = [p for r in reports for p in r.problems]
    if problems:
        kinds = Counter(p.kind for p in problems)
        lines.append(
            f"{len(problems)} problem(s): "
            + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        )
        lines.extend(f"  {p.kind}: {p.path}: {p.problem}" for p in problems)
    else:
        lines.append("no problems found")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.ERROR)  # the report lists the problems once
    try:
        check_group_overrides(argv)
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=list(argv), return_hydra_config=True)
        # ${hydra:runtime.cwd} (the default data dir) resolves as in a train.py run.
        HydraConfig().set_config(cfg)
        reports = check(cfg.data)
    except (SegbenchError, HydraException, OmegaConfBaseException) as err:
        cause = err.__cause__ if isinstance(err.__cause__, SegbenchError) else err
        print(f"error: {cause}", file=sys.stderr)
        return 2
    print(format_report(reports, list(cfg.data.class_names), cfg.data.ignore_index))
    return 1 if any(r.problems for r in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
