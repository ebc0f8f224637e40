"""Class remapping: train a dataset's label set as another one (``data.remap``).

A remap names the source classes (the dataset's own ids, after its label
mapping: Cityscapes' 19 train ids, CamVid's 11, a folder's ids) and says for
each one which target class it becomes, or ``ignore``. The target classes are
the data config's own ``class_names`` (so ``num_classes``, colours, metrics,
logged names and the checkpoint's facts follow the target set)::

    remap:
      source: [road, sidewalk, building, ...]   # source ids 0, 1, 2, ... by name
      source_ignore_index: 255                   # the source's "unlabelled" value
      classes: {road: road, rider: person, car: vehicle, wall: ignore, ...}

Keys of ``classes`` are source names or source ids; every source class must be
listed, so a class left out by mistake is an error, not silently ignored.

The remap becomes one 256-entry lookup table composed with the dataset's own
``label_map`` (:meth:`ClassRemap.apply`), so masks are mapped once when read,
the class-weight cache (keyed on ``label_map``) follows it, and the mask check
still sees the result. Values that are neither a source class nor the source
ignore index keep their value, so a damaged mask is still reported (unless the
value is a valid target id, where the target has more classes than the source:
those become the ignore index).
"""

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from segbench.data.dataset import SegmentationDataset
from segbench.errors import ConfigError

log = logging.getLogger(__name__)

#: Target name (or YAML null) that drops a source class from loss and metrics.
IGNORE = "ignore"
KEYS = ("source", "source_ignore_index", "classes")


class ClassRemap:
    """A source -> target class mapping, checked against the target class list.

    Args:
        target_names: The data config's ``class_names`` (target ids in order).
        ignore_index: The target ignore index (``data.ignore_index``).
        source: Source class names, in source-id order.
        classes: Source name or id -> target name, or ``ignore`` / None.
        source_ignore_index: The source's unlabelled value; becomes ``ignore_index``.

    Raises:
        ConfigError: an unknown source or target name, a source class not listed,
            a source id out of range; each names the ``data.remap`` key.
    """

    def __init__(
        self,
        target_names: Sequence[str],
        ignore_index: int,
        source: Sequence[str],
        classes: Mapping,
        source_ignore_index: int = 255,
    ) -> None:
        self.source, self.target = [str(s) for s in source], [str(t) for t in target_names]
        self.ignore_index, self.source_ignore_index = ignore_index, source_ignore_index
        if not 0 <= ignore_index < 256:
            raise ConfigError(
                "data.ignore_index",
                ignore_index,
                "masks are 8-bit: a remap needs an ignore index in 0..255",
                fix="use 255",
            )
        if not self.source or len(set(self.source)) != len(self.source) or len(self.source) > 255:
            raise ConfigError(
                "data.remap.source",
                self.source,
                "needs the source class names in id order, each once (at most 255)",
                fix="list the dataset's own classes, e.g. the class_names of its conf/data yaml",
            )
        self.mapping = self._resolve(classes)

    def _resolve(self, classes: Mapping) -> dict[int, int]:
        """Source id -> target id (``ignore_index`` for ignored), every source class once."""
        mapping: dict[int, int] = {}
        for key, value in dict(classes).items():
            src = self._source_id(key)
            if src in mapping:
                raise ConfigError(
                    f"data.remap.classes.{key}",
                    value,
                    f"source class {self.source[src]!r} (id {src}) is listed twice",
                )
            mapping[src] = self._target_id(key, value)
        missing = [name for i, name in enumerate(self.source) if i not in mapping]
        if missing:
            raise ConfigError(
                "data.remap.classes",
                missing,
                "source classes not mapped (every source class must be listed)",
                fix=f"map each to one of {self.target} or to {IGNORE}, e.g. "
                f"data.remap.classes.{missing[0]}={IGNORE}",
            )
        unused = [t for i, t in enumerate(self.target) if i not in mapping.values()]
        if unused:
            log.warning("data.remap: no source class maps to %s (never in the labels)", unused)
        return mapping

    def _source_id(self, key: object) -> int:
        if isinstance(key, int) and 0 <= key < len(self.source):
            return key
        if str(key) in self.source:
            return self.source.index(str(key))
        raise ConfigError(
            f"data.remap.classes.{key}",
            key,
            f"is neither a source class name nor a source id 0..{len(self.source) - 1}",
            allowed=self.source,
            fix="use the names of data.remap.source",
        )

    def _target_id(self, key: object, value: object) -> int:
        if value is None or str(value) == IGNORE:
            return self.ignore_index
        if str(value) in self.target:
            return self.target.index(str(value))
        raise ConfigError(
            f"data.remap.classes.{key}",
            value,
            "is not a target class (data.class_names)",
            allowed=[*self.target, IGNORE],
            fix=f"map it to one of data.class_names or to {IGNORE}",
        )

    def lut(self) -> np.ndarray:
        """256-entry table: source value -> target id (see the module docstring)."""
        table = np.arange(256, dtype=np.uint8)
        # Values outside the source classes keep theirs (the mask check reports them),
        # except where that would pass for a target class.
        table[len(self.source) : len(self.target)] = self.ignore_index
        for src, dst in self.mapping.items():
            table[src] = dst
        if 0 <= self.source_ignore_index < 256:
            table[self.source_ignore_index] = self.ignore_index
        return table

    def apply(self, dataset: SegmentationDataset) -> SegmentationDataset:
        """Composes the remap with ``dataset``'s own ``label_map`` (in place); returns it."""
        table = self.lut()
        own = dataset.label_map
        dataset.label_map = table if own is None else table[own]
        return dataset

    def describe(self) -> dict[str, list[str]]:
        """Target name (or ``ignore``) -> the source names mapped to it."""
        out: dict[str, list[str]] = {name: [] for name in [*self.target, IGNORE]}
        for src, dst in sorted(self.mapping.items()):
            out[self.target[dst] if dst < len(self.target) else IGNORE].append(self.source[src])
        return out


def class_remap(
    remap: Mapping | None, class_names: Sequence[str], ignore_index: int
) -> ClassRemap | None:
    """The :class:`ClassRemap` a data config's ``remap`` node describes (None: no remap).

    Raises:
        ConfigError: an unknown key in ``data.remap`` or any problem of :class:`ClassRemap`.
    """
    if not remap:
        return None
    remap = dict(remap)
    unknown = [k for k in remap if k not in KEYS]
    if unknown or "source" not in remap or "classes" not in remap:
        raise ConfigError(
            "data.remap",
            sorted(remap),
            f"expects the keys {list(KEYS)} (source_ignore_index optional, default 255)",
            allowed=KEYS,
            fix="see conf/data/cityscapes8.yaml for an example",
        )
    result = ClassRemap(
        class_names,
        ignore_index,
        list(remap["source"]),
        remap["classes"],
        int(remap.get("source_ignore_index", 255)),
    )
    log.info("data.remap (target <- source classes): %s", result.describe())
    return result
