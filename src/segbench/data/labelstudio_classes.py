"""Classes of a Label Studio import: label names -> class ids, the mask PNGs, dataset.yaml."""

import io
import json
import logging
import re
import shlex
from collections import Counter
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from segbench.data.facts import default_palette
from segbench.errors import ConfigError, closest_first
from segbench.files import atomic_write, write_text

log = logging.getLogger(__name__)

IGNORE = "ignore"
#: Names Hydra reads as they are on the command line (others are quoted).
PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def parse_classes(value: str | None) -> list[str] | None:
    """``--classes``: ``a,b,c``, or a yaml/json file whose ``class_names`` lists them."""
    if not value:
        return None
    path = Path(value)
    if path.suffix.lower() in (".yaml", ".yml", ".json") and path.is_file():
        data = yaml.safe_load(path.read_text()) or {}
        names = data.get("class_names") if isinstance(data, dict) else None
        if not isinstance(names, list) or not names:
            raise ConfigError(
                "--classes",
                value,
                "the file has no class_names list",
                fix="a conf/data yaml, a dataset.yaml of an earlier import, or a,b,c",
            )
    else:
        names = [n.strip() for n in value.split(",") if n.strip()]
    names = [str(n) for n in names]
    if len(set(names)) != len(names) or IGNORE in names:
        raise ConfigError("--classes", names, f"names must be unique and not '{IGNORE}'")
    return names


def parse_mapping(items: list[str]) -> dict[str, str]:
    """``--map LABEL=CLASS`` items (CLASS may be ``ignore``)."""
    mapping = {}
    for item in items:
        label, sep, target = item.partition("=")
        if not sep or not label.strip() or not target.strip():
            raise ConfigError("--map", item, "expected LABEL=CLASS (or LABEL=ignore)")
        mapping[label.strip()] = target.strip()
    return mapping


def class_lookup(labels: list[str], options) -> tuple[list[str], dict[str, int]]:
    """The class list and each label's class id (the ignore index for ignored labels).

    Raises:
        ConfigError: labels (or ``--map`` targets) outside ``--classes``, listing the
            closest class names; an ``--unlabeled`` class not among the classes; too
            many classes for 8-bit masks.
    """
    mapped = {label: options.mapping.get(label, label) for label in sorted(set(labels))}
    for label in sorted(set(options.mapping) - set(mapped)):
        log.warning("--map %s=...: no region in the export has this label", label)
    if options.classes is None:
        classes = sorted({m for m in mapped.values() if m != IGNORE})
        if options.unlabeled != IGNORE and options.unlabeled not in classes:
            classes.insert(0, options.unlabeled)
    else:
        classes = list(options.classes)
        unknown = [(label, m) for label, m in mapped.items() if m != IGNORE and m not in classes]
        if unknown:
            listed = "; ".join(
                f"{label!r}"
                + (f" (mapped to {m!r})" if m != label else "")
                + f", closest: {', '.join(closest_first(m, classes)[:2])}"
                for label, m in unknown
            )
            label = unknown[0][0]
            raise ConfigError(
                "--classes",
                classes,
                f"labels in the export that are not classes: {listed}",
                fix=f"add them to --classes, or map each one: --map '{label}="
                f"{closest_first(label, classes)[0]}' or --map '{label}={IGNORE}'",
            )
        if options.unlabeled != IGNORE and options.unlabeled not in classes:
            raise ConfigError(
                "--unlabeled", options.unlabeled, "is not a class", allowed=[IGNORE, *classes]
            )
    if not classes or len(classes) > options.ignore_index or not 0 <= options.ignore_index < 256:
        raise ConfigError(
            "--ignore-index",
            options.ignore_index,
            f"{len(classes)} classes need ids below the ignore index (< 256)",
            fix="8-bit masks hold at most 255 classes and the ignore index",
        )
    lookup = {
        label: options.ignore_index if m == IGNORE else classes.index(m)
        for label, m in mapped.items()
    }
    if options.unlabeled != IGNORE:
        lookup.setdefault(options.unlabeled, classes.index(options.unlabeled))
    return classes, lookup


def mask_png(path: Path, ids: np.ndarray, ignore_index: int) -> Path:
    """Writes class ids as an 8-bit palette PNG (segbench's default colours; viewers show them)."""
    image = Image.fromarray(ids)  # "L"; putpalette makes it "P" with the same indices
    palette = default_palette(256)
    palette[ignore_index] = [255, 255, 255]
    image.putpalette([v for rgb in palette for v in rgb])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def hydra_value(names: list[str]) -> str:
    """A list as a Hydra override value, quoting the names Hydra would not read as strings."""

    def one(name: str) -> str:
        if PLAIN_NAME.match(name) and name.lower() not in ("true", "false", "null", "nan", "inf"):
            return name
        return json.dumps(name)

    return "[" + ",".join(one(n) for n in names) + "]"


def write_dataset_yaml(out: Path, classes: list[str], options, sizes: Counter, report: dict) -> str:
    """Writes ``<out>/dataset.yaml`` (the data facts and the import report); returns the
    ``python train.py data=folder ...`` command that trains on the import."""
    (height, width), _ = sizes.most_common(1)[0]
    overrides = [
        "data=folder",
        f"data.root={out.resolve()}",
        f"data.num_classes={len(classes)}",
        f"data.class_names={hydra_value(classes)}",
        f"data.image_size=[{height},{width}]",
    ]
    if options.ignore_index != 255:
        overrides.append(f"data.ignore_index={options.ignore_index}")
    if len(sizes) > 1:  # batches need one size: resize when read
        overrides += [f"data.dataset.height={height}", f"data.dataset.width={width}"]
    command = "python train.py " + " ".join(shlex.quote(o) for o in overrides)
    facts = {
        "root": str(out.resolve()),
        "num_classes": len(classes),
        "ignore_index": options.ignore_index,
        "class_names": classes,
        "colors": default_palette(len(classes)),
        "image_size": [height, width],
        "image_sizes": {f"{w}x{h}": n for (h, w), n in sizes.most_common()},
        "train_command": command,
        "import": report,
    }
    header = (
        "# A Label Studio export imported by `segbench import-labelstudio` (segbench's folder\n"
        "# layout: images/<name>.*, masks/<name>.png of class ids). Train on it with:\n"
        f"#   {command}\n"
    )
    write_text(out / "dataset.yaml", header + yaml.safe_dump(facts, sort_keys=False))
    return command
