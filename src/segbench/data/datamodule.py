"""One data module for every dataset: its facts, splits, transforms and loaders.

Plain PyTorch: training hands its loaders to Lightning, evaluation, export and
prediction use them directly. :func:`data_from_config` rebuilds it from a config
dict (a ``conf/data/*.yaml``, or the one a checkpoint stores) without Hydra and
without importing or calling anything the config names outside segbench's datasets.
"""

import functools
import inspect
import logging
from collections.abc import Callable, Sequence

from torch.utils.data import DataLoader

from segbench.data.batching import collate
from segbench.data.cache import attach_cache, check_cache_policy
from segbench.data.dataset import SegmentationDataset
from segbench.data.facts import check_facts, check_loading, default_palette
from segbench.data.remap import class_remap
from segbench.data.transforms import build_transform
from segbench.errors import ConfigError
from segbench.targets import resolve_class

__all__ = ["SegmentationDataModule", "data_for_checkpoint", "data_from_config", "default_palette"]

log = logging.getLogger(__name__)


class SegmentationDataModule:
    """Loads a dataset's splits with training augmentation and shared normalisation.

    The dataset facts (classes, ignore index, colours, mean/std) are written
    once in ``conf/data/<name>.yaml`` and reach the model, loss and metrics from
    here.

    Args:
        root: Dataset root folder, laid out as the dataset's owners distribute it.
        dataset: Factory ``(root=, split=, num_classes=, ignore_index=, transform=)`` of a
            :class:`SegmentationDataset` (a Hydra ``_partial_``).
        num_classes: Number of classes.
        ignore_index: Label ignored by losses and metrics.
        class_names: One name per class.
        colors: One RGB colour per class, for visualisations (None: the PASCAL VOC colour map).
        mean: Normalisation mean (RGB, images in [0, 1]).
        std: Normalisation std.
        image_size: ``[H, W]`` the dataset is stored at.
        batch_size: Training batch size (validation uses the same).
        num_workers: DataLoader worker processes.
        pin_memory: Pin host memory (useful with CUDA).
        augment: albumentations transforms for the training split.
        on_bad_sample: ``error`` stops at a damaged or unpaired file; ``skip``
            logs each one and leaves it out.
        mode: The dataset's label variant where it has several (Oxford Pet:
            ``binary`` or ``trimap``); passed to the dataset factory as ``mode=``.
        modes: The class facts of each mode (``num_classes``, ``class_names``,
            ``colors``), which the yaml interpolates; listed here so that a
            mistyped ``data.mode`` is refused by name.
        remap: Source classes -> these classes (``source``, ``classes``,
            ``source_ignore_index``; :mod:`segbench.data.remap`), applied to
            every mask when read; None keeps the dataset's own classes.
        cache: Decode each frame once into memory: ``auto`` (small splits), ``true``, ``false``
            (:mod:`segbench.data.cache`).
        uint8_batches: The training loader yields uint8 frames and masks, which
            :class:`~segbench.training.module.SegmentationModule` converts on the device
            (a fifth of the bytes to share, pin and copy; no float work in the workers).
            Other splits always get normalised float32 frames.
    """

    def __init__(
        self,
        root: str,
        dataset: Callable[..., SegmentationDataset],
        num_classes: int,
        ignore_index: int,
        class_names: Sequence[str],
        colors: Sequence[Sequence[int]] | None,
        mean: Sequence[float],
        std: Sequence[float],
        image_size: Sequence[int],
        batch_size: int = 8,
        num_workers: int = 0,
        pin_memory: bool = False,
        augment: Sequence = (),
        on_bad_sample: str = "error",
        mode: str | None = None,
        modes: dict | None = None,
        remap: dict | None = None,
        cache: bool | str = "auto",
        uint8_batches: bool = False,
    ) -> None:
        check_cache_policy(cache)
        colors = check_facts(
            num_classes, ignore_index, class_names, colors, on_bad_sample, mode, modes
        )
        check_loading(batch_size, num_workers, image_size, uint8_batches)
        self.remap = class_remap(remap, class_names, ignore_index)
        self.root, self.dataset = root, dataset
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.class_names, self.colors = list(class_names), [list(c) for c in colors]
        self.mean, self.std, self.image_size = list(mean), list(std), list(image_size)
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.augment = list(augment)
        self.on_bad_sample, self.mode, self.cache = on_bad_sample, mode, cache
        self.uint8_batches = uint8_batches  # for the train split only (get_split)
        self.splits: dict[str, SegmentationDataset] = {}

    @property
    def meta(self) -> dict:
        """The dataset facts a checkpoint keeps so evaluation and export can reuse them."""
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "class_names": self.class_names,
            "colors": self.colors,
            "mean": self.mean,
            "std": self.std,
            "image_size": self.image_size,
        }

    def get_split(self, split: str) -> SegmentationDataset:
        """The dataset of ``split`` (built once; training augments, other splits do not)."""
        if split not in self.splits:
            uint8 = split == "train" and self.uint8_batches
            augment = self.augment if split == "train" else ()
            extra = {} if self.mode is None else {"mode": self.mode}
            self.splits[split] = self.dataset(
                root=self.root,
                split=split,
                num_classes=self.num_classes,
                ignore_index=self.ignore_index,
                transform=build_transform(self.mean, self.std, augment, normalize=not uint8),
                on_bad_sample=self.on_bad_sample,
                **extra,
            )
            dataset = self.splits[split]
            dataset.uint8_masks = uint8
            if self.remap is not None:
                self.remap.apply(dataset)
            log.info("%s split: %d samples from %s", split, len(dataset), dataset.root)
        return self.splits[split]

    def setup(self, stage: str | None = None) -> None:
        """Opens the splits a stage needs (``fit``: train and val), failing early on a bad root."""
        if stage in (None, "fit"):
            self.get_split("train")
        if stage in (None, "fit", "validate"):
            self.get_split("val")

    def loader(self, split: str, shuffle: bool = False) -> DataLoader:
        """A DataLoader over ``split`` (decoded into memory first, before workers start, per
        ``cache``)."""
        attach_cache(self.get_split(split), self.cache)
        return DataLoader(
            self.get_split(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            drop_last=shuffle and len(self.get_split(split)) > self.batch_size,
            persistent_workers=self.num_workers > 0,
            collate_fn=functools.partial(collate, self.get_split(split)),
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")


#: Data module classes a config's ``_target_`` may name (the second: its module path).
DATAMODULE_TARGETS = (
    "segbench.data.SegmentationDataModule",
    "segbench.data.datamodule.SegmentationDataModule",
)
#: Modules a dataset ``_target_`` may be imported from.
DATASET_PREFIX = "segbench.data."


def data_from_config(config: dict, trusted: bool = False, **overrides) -> SegmentationDataModule:
    """Builds the data module a resolved data config describes, running nothing else.

    Unlike Hydra's ``instantiate``, only :class:`SegmentationDataModule` and a
    :class:`~segbench.data.dataset.SegmentationDataset` subclass of
    ``segbench.data`` (or one already imported) can be named, so a checkpoint's
    stored dataset config cannot call arbitrary code.

    Args:
        config: A resolved ``conf/data/*.yaml`` (``_target_``, ``dataset`` with
            its ``_target_`` and arguments, and the facts).
        trusted: The config is the user's own (command line, yaml): its dataset
            class may live in any module.
        **overrides: Arguments that replace the config's (``root``, ``batch_size``, ...).

    Raises:
        ConfigError: a ``_target_`` outside what is allowed, or an argument the
            class does not take, naming the key.
    """
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")} | overrides
    check_arguments("data", kwargs, SegmentationDataModule, exclude=() if trusted else ("augment",))
    target = config.get("_target_")
    if target not in DATAMODULE_TARGETS:
        raise ConfigError(
            "data._target_",
            target,
            "is not segbench's data module; nothing else is built from a dataset config",
            allowed=DATAMODULE_TARGETS[:1],
        )
    dataset = dict(kwargs.pop("dataset", None) or {})
    cls = dataset_class(str(dataset.pop("_target_", "")), trusted)
    dataset = {k: v for k, v in dataset.items() if not k.startswith("_")}
    check_arguments("data.dataset", dataset, cls)
    return SegmentationDataModule(dataset=functools.partial(cls, **dataset), **kwargs)


def check_arguments(key: str, kwargs: dict, cls: type, exclude: Sequence[str] = ()) -> None:
    """Refuses a config argument that ``cls`` does not take (instead of a TypeError later)."""
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [name for name in params if name not in exclude]
    for name in kwargs:
        if name in exclude or (name not in params and not takes_any):
            raise ConfigError(
                f"{key}.{name}",
                kwargs[name],
                f"is not an argument of {cls.__name__}",
                allowed=allowed,
                fix="remove it or correct its name",
            )


def data_for_checkpoint(
    hparams: dict, data_cfg: dict | None = None, **overrides
) -> SegmentationDataModule:
    """The data module to score or export a checkpoint on.

    Args:
        hparams: The checkpoint's hyper-parameters; its ``datamodule`` config
            (not trusted: see :func:`data_from_config`) is used unless ``data_cfg``
            is given.
        data_cfg: A resolved data config of the user's own (``data=...`` on the
            command line), or None.
        **overrides: Arguments that replace the config's (``batch_size``, ...).
    """
    stored = hparams.get("datamodule")
    if not data_cfg and not isinstance(stored, dict):
        raise ConfigError(
            "data",
            None,
            "the checkpoint stores no dataset config",
            fix="name the dataset: data=<name> data.root=<folder>",
        )
    datamodule = data_from_config(data_cfg or stored, trusted=bool(data_cfg), **overrides)
    check_same_classes(hparams.get("data") or {}, datamodule)
    return datamodule


def check_same_classes(trained: dict, datamodule: SegmentationDataModule) -> None:
    """Refuses data whose class count differs from the one the network was trained on.

    Same count, other names: scored, with a warning (the ids are compared as they are).

    Raises:
        ConfigError: naming ``data.num_classes``, both counts and the fix.
    """
    count, names = trained.get("num_classes"), list(trained.get("class_names") or [])
    if count is None:
        return
    if datamodule.num_classes != count:
        raise ConfigError(
            "data.num_classes",
            datamodule.num_classes,
            f"the checkpoint predicts {count} classes ({', '.join(names[:6])}"
            f"{', ...' if len(names) > 6 else ''}), this dataset has {datamodule.num_classes}",
            fix="leave data=... out to use the checkpoint's own dataset, or fine-tune it on "
            "this one first: train.py data=<name> init.checkpoint=<this checkpoint>",
        )
    if names and names != datamodule.class_names:
        log.warning(
            "the checkpoint's classes %s differ in name from the dataset's %s; ids are "
            "compared as they are",
            names,
            datamodule.class_names,
        )


def dataset_class(target: str, trusted: bool = False) -> type[SegmentationDataset]:
    """The dataset class ``target`` names: under ``segbench.data`` or already imported
    (anywhere, if ``trusted``).

    Raises:
        ConfigError: anything else, naming ``data.dataset._target_``.
    """
    return resolve_class(
        target, SegmentationDataset, DATASET_PREFIX, "data.dataset._target_", trusted
    )
