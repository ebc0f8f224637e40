"""Pairing images with their label maps by file stem, reporting what does not pair."""

from collections.abc import Callable
from pathlib import Path

from segbench.data.dataset import Sample, SegmentationDataset
from segbench.data.reading import SampleError


def pair_by_stem(
    dataset: SegmentationDataset,
    images: list[Path],
    masks: list[Path],
    mask_dir: Path,
    mask_stem: Callable[[Path], str] = lambda p: p.stem,
    image_stem: Callable[[Path], str] = lambda p: p.stem,
) -> list[Sample]:
    """Pairs images with masks by stem; unpaired or ambiguous files go to ``dataset.bad_file``.

    Args:
        dataset: The dataset listing its samples (its ``on_bad_sample`` decides).
        images: Image files of the split.
        masks: Mask files of the split.
        mask_dir: Where masks are expected (for the messages).
        mask_stem: The pairing key of a mask file.
        image_stem: The pairing key of an image file.
    """
    by_key: dict[str, list[Path]] = {}
    for m in sorted(masks):
        by_key.setdefault(mask_stem(m), []).append(m)
    seen: dict[str, Path] = {}
    samples = []
    for image in sorted(images):
        key = image_stem(image)
        if key in seen:
            dataset.bad_file(
                SampleError(
                    image,
                    "duplicate_name",
                    f"same name as {seen[key].name}: the pairing is ambiguous",
                    fix="keep one file per name",
                )
            )
            continue
        seen[key] = image
        found = by_key.get(key, [])
        if not found:
            dataset.bad_file(
                SampleError(
                    image,
                    "missing_mask",
                    f"no mask for this image in {mask_dir}",
                    fix=f"every image needs a mask named after it in {mask_dir}",
                )
            )
        elif len(found) > 1:
            dataset.bad_file(
                SampleError(
                    image,
                    "duplicate_name",
                    f"several masks match: {[m.name for m in found]}",
                    fix="keep one mask per image",
                )
            )
        else:
            samples.append(Sample(image, found[0]))
    for key, found in by_key.items():
        if key not in seen:
            for m in found:
                dataset.bad_file(
                    SampleError(
                        m,
                        "orphan_mask",
                        "mask without an image",
                        fix="remove it or restore its image",
                    )
                )
    return samples
