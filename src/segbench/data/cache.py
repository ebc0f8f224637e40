"""Decoded frames held in memory, so each file is read and decoded once per run.

A few hundred frames (CamVid: 367 + 101 at 360x480, about 320 MB as uint8) fit in
memory; decoding them every epoch made GPU training wait on PNG decoding. The
cache is filled in the main process before the loader starts its workers: forked
workers share its pages (nothing is copied until written, and nothing writes
them), spawned workers receive a copy. Decoding runs in a thread pool (Pillow and
OpenCV release the GIL while decoding).

``data.cache``: ``true`` caches every split a loader reads, ``false`` reads from
disk each time, ``auto`` caches a split whose decoded size (estimated from the
first frame's header) is at most :data:`AUTO_MAX_BYTES` and a quarter of the
machine's memory.
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from segbench.data.dataset import SegmentationDataset
from segbench.data.reading import SampleError, image_size
from segbench.errors import ConfigError

log = logging.getLogger(__name__)

CACHE_POLICIES = ("auto", True, False)
#: ``data.cache=auto`` caches a split only below this decoded size (and 1/4 of the memory).
AUTO_MAX_BYTES = 8 * 2**30


def check_cache_policy(cache: object) -> None:
    """Refuses a ``data.cache`` value other than ``auto``, ``true`` or ``false``."""
    if not (cache == "auto" or cache is True or cache is False):
        raise ConfigError(
            "data.cache",
            cache,
            "unknown cache policy",
            allowed=("auto", "true", "false"),
            fix="data.cache=auto (small datasets in memory), true or false",
        )


class DecodedCache:
    """The decoded ``(image, mask)`` uint8 arrays of a dataset's samples, by index.

    A sample that failed to read (``data.on_bad_sample=skip``) keeps its error,
    raised again on :meth:`get`, so the dataset skips it as it would from disk.
    """

    def __init__(self, pairs: list) -> None:
        self.pairs = pairs

    @classmethod
    def fill(cls, dataset, threads: int | None = None) -> "DecodedCache":
        """Decodes every sample of ``dataset`` (its ``load_pair``) once.

        Raises:
            SampleError: the first damaged sample, when ``dataset.on_bad_sample`` is ``error``.
        """

        def read(sample):
            try:
                return dataset.load_pair(sample)
            except SampleError as err:
                return err

        threads = threads or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            pairs = list(pool.map(read, dataset.samples))
        for pair in pairs:
            if isinstance(pair, SampleError) and dataset.on_bad_sample == "error":
                raise pair
        return cls(pairs)

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of sample ``index``'s arrays (augmentation may write to its input)."""
        pair = self.pairs[index]
        if isinstance(pair, SampleError):
            raise pair
        return pair[0].copy(), pair[1].copy()

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes + b.nbytes for a, b in self.good())

    def good(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [p for p in self.pairs if not isinstance(p, SampleError)]


def estimated_bytes(dataset) -> int:
    """Decoded size of a split (uint8 RGB + mask per pixel), from the first frame's header.

    Datasets that resize when reading (``height``/``width``) are estimated at that size.
    """
    height, width = getattr(dataset, "height", None), getattr(dataset, "width", None)
    if not (height and width):
        try:
            height, width = image_size(dataset.samples[0].image)
        except SampleError:
            return 0  # unreadable first frame: let reading report it
    return 4 * int(height) * int(width) * len(dataset.samples)


def memory_bytes() -> int | None:
    """Physical memory of the machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def attach_cache(dataset, cache: bool | str) -> bool:
    """Gives ``dataset`` a :class:`DecodedCache` per the ``data.cache`` policy (once).

    Returns:
        Whether the dataset reads from memory.
    """
    check_cache_policy(cache)
    if getattr(dataset, "decoded", None) is not None:
        return True
    if cache is False or not isinstance(dataset, SegmentationDataset):
        return False  # a wrapped or foreign dataset reads as it reads
    size = estimated_bytes(dataset)
    if cache == "auto":
        limit = min(AUTO_MAX_BYTES, (memory_bytes() or 4 * AUTO_MAX_BYTES) // 4)
        if size > limit:
            log.info(
                "%s split: %.1f GB decoded is over data.cache=auto's %.1f GB: read from disk",
                dataset.split,
                size / 1e9,
                limit / 1e9,
            )
            return False
    dataset.decoded = DecodedCache.fill(dataset)
    log.info(
        "%s split: %d samples decoded into memory (%.0f MB, data.cache=%s)",
        dataset.split,
        len(dataset.decoded.good()),
        dataset.decoded.nbytes / 1e6,
        str(cache).lower(),
    )
    return True
