"""A data config's facts checked against each other and against what the loaders accept."""

from collections.abc import Sequence

from segbench.checks import require_int, require_size
from segbench.data.dataset import check_policy
from segbench.data.reading import MIN_SIZE
from segbench.errors import ConfigError


def check_loading(
    batch_size: object, num_workers: object, image_size: object, uint8_batches: object = False
) -> None:
    """Refuses a batch size, worker count, image size or batch format the loaders cannot use.

    Raises:
        ConfigError: naming ``data.batch_size``, ``data.num_workers``, ``data.image_size``
            or ``data.uint8_batches``.
    """
    if not isinstance(uint8_batches, bool):
        raise ConfigError(
            "data.uint8_batches", uint8_batches, "is a switch", allowed=("true", "false")
        )
    require_int(
        "data.batch_size",
        batch_size,
        1,
        fix="use a whole number of samples >= 1, e.g. data.batch_size=4 (batch_size=... for evaluate/export)",
    )
    require_int(
        "data.num_workers",
        num_workers,
        0,
        fix="use 0 (load in the main process) or a number of worker processes, e.g. data.num_workers=2",
    )
    require_size(
        "data.image_size",
        image_size,
        MIN_SIZE,
        fix=f"give [H, W] as the data is stored, each >= {MIN_SIZE}, e.g. data.image_size=[360,480]",
    )


def check_facts(
    num_classes: int,
    ignore_index: int,
    class_names: Sequence[str],
    colors: Sequence[Sequence[int]] | None,
    on_bad_sample: str,
    mode: str | None = None,
    modes: dict | None = None,
) -> Sequence[Sequence[int]]:
    """Checks a data config's facts against each other; returns the colours (a default if None).

    Raises:
        ConfigError: naming the key (``data.mode``, ``data.class_names``, ...) and the fix.
    """
    if modes is not None and mode not in modes:
        raise ConfigError(
            "data.mode",
            mode,
            "this dataset has no such mode",
            allowed=modes,
            fix=f"pick one, e.g. data.mode={next(iter(modes))}",
        )
    check_policy(on_bad_sample)
    require_int("data.num_classes", num_classes, 1, fix="give the number of classes, e.g. 3")
    if colors is None:  # bring-your-own data: a fixed, distinguishable palette
        colors = default_palette(len(class_names))
    if len(class_names) != num_classes:
        raise ConfigError(
            "data.class_names",
            list(class_names),
            f"{len(class_names)} names for data.num_classes={num_classes}",
            fix="give one name per class",
        )
    if len(colors) != num_classes:
        raise ConfigError(
            "data.colors",
            len(colors),
            f"{len(colors)} colours for data.num_classes={num_classes}",
            fix="give one RGB colour per class",
        )
    if 0 <= ignore_index < num_classes:
        raise ConfigError(
            "data.ignore_index",
            ignore_index,
            f"is a class id (classes are 0..{num_classes - 1})",
            fix="use a value outside the class ids, e.g. 255",
        )
    return colors


def default_palette(n: int) -> list[list[int]]:
    """The PASCAL VOC colour map: ``n`` distinct RGB colours from the bits of the class id."""
    colors = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colors.append([r, g, b])
    return colors
