"""``segbench import-labelstudio <export.json> <out root>``: Label Studio labels as a folder dataset.

Turns a Label Studio JSON export of a semantic-segmentation project (brush and
polygon regions; :mod:`segbench.data.labelstudio_export`) into segbench's
``folder`` layout, ``<out>/images/<name>.*`` + ``<out>/masks/<name>.png`` (8-bit
palette PNGs of class ids), with ``<out>/dataset.yaml`` (classes, colours, what
was imported and skipped) and the ``train.py data=folder ...`` command to train on it.

Rules (each counted in the report):

- class ids: the order of ``--classes`` (a comma list, or a yaml/json with
  ``class_names``), else the label names sorted (the ``--unlabeled`` class first);
  a label outside ``--classes`` is an error listing the closest names, unless
  ``--map LABEL=CLASS`` (or ``LABEL=ignore``) maps it;
- overlapping regions: the later region of the annotation wins (Label Studio
  draws it on top); ``--overlap ignore`` marks pixels two classes claim as ignored;
- unlabelled pixels get the ignore index (255), or ``--unlabeled CLASS``;
- a task without a usable annotation (none, only cancelled ones, or none with a
  brush/polygon region unless ``--unlabeled`` names a class) is skipped;
- cancelled annotations never count; of several, a ``ground_truth`` one wins, then
  the most recently updated; predictions (pre-annotations) are not imported;
- image files are found from the task's path (``/data/upload/...``,
  ``/data/local-files/?d=...``, URLs, plain paths) under ``--images`` folders and
  the export's folder; a missing one is an error (``--skip-missing`` skips it).
"""

import argparse
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segbench.data import labelstudio_export as ls
from segbench.data.labelstudio_classes import (
    class_lookup,
    mask_png,
    parse_classes,
    parse_mapping,
    write_dataset_yaml,
)
from segbench.data.reading import SampleError
from segbench.errors import DataError, exit_on_user_error
from segbench.files import atomic_write

log = logging.getLogger(__name__)

IGNORE = "ignore"


@dataclass
class Options:
    """How an export is imported (the command's options; see the module docstring)."""

    images: list[Path] = field(default_factory=list)
    classes: list[str] | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    ignore_index: int = 255
    unlabeled: str = IGNORE
    overlap: str = "later"
    image_key: str | None = None
    skip_missing: bool = False


def load_tasks(path: Path) -> list[dict]:
    """The tasks of a Label Studio JSON export, or DataError saying what the file is instead."""
    fix = "export the project with Label Studio's 'JSON' format (not JSON-MIN, CSV or COCO)"
    try:
        tasks = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(path, "export file not found", fix=fix) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(path, f"cannot be read as JSON ({err})", fix=fix) from None
    tasks = [tasks] if isinstance(tasks, dict) else tasks
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and "data" in t for t in tasks):
        raise DataError(path, "is not a list of Label Studio tasks (each with 'data')", fix=fix)
    return tasks


def select(tasks: list[dict], options: Options, report: dict) -> list[tuple[dict, list[dict]]]:
    """The tasks to import with their regions; the others are recorded as skipped."""
    chosen = []
    for task in tasks:
        annotation, why = ls.choose_annotation(task)
        report["cancelled_annotations"] += sum(
            bool(a.get("was_cancelled")) for a in task.get("annotations") or []
        )
        if annotation is None:
            skip(report, task, why)
            continue
        if why != "the only annotation":
            report["multiple_annotations"].append({"task": task.get("id"), "chosen": why})
        results = annotation.get("result") or []
        regions = [r for r in results if ls.is_region(r) and ls.region_label(r) is not None]
        report["other_results"] += len(results) - len(regions)
        if not regions and options.unlabeled == IGNORE:
            skip(report, task, "annotation without a brush or polygon region")
            continue
        chosen.append((task, regions))
    return chosen


def skip(report: dict, task: dict, reason: str) -> None:
    log.warning("task %s skipped: %s", task.get("id"), reason)
    report["skipped"].append({"task": task.get("id"), "reason": reason})


def paint(regions, lookup, height, width, decode, options) -> tuple[np.ndarray, int]:
    """The class-id map of one annotation, and how many pixels two classes claimed."""
    owner = np.full((height, width), -1, np.int16)
    conflict = np.zeros((height, width), bool)
    for result in regions:
        target = lookup[ls.region_label(result)]
        pixels = ls.region_pixels(result, height, width, decode)
        conflict |= pixels & (owner >= 0) & (owner != target)
        owner[pixels] = target  # later regions are drawn on top
    background = options.ignore_index if options.unlabeled == IGNORE else lookup[options.unlabeled]
    ids = np.where(owner >= 0, owner, background).astype(np.uint8)
    if options.overlap == IGNORE:
        ids[conflict] = options.ignore_index
    return ids, int(conflict.sum())


def find_images(chosen, export: Path, options: Options, report: dict) -> list[tuple]:
    """``(task, regions, image file, output name)`` per task; missing files raise or skip."""
    folders = [*options.images, export.parent]
    found, missing = [], []
    for task, regions in chosen:
        ref = ls.image_reference(task, options.image_key)
        path, tried = ls.resolve_image(ref, folders)
        if path is None:
            missing.append((task, ref, tried))
        else:
            found.append((task, regions, path, ls.output_name(ref)))
    if missing and not options.skip_missing:
        lines = [
            f"{ref} (task {t.get('id')}; looked for {', '.join(map(str, tried[:4]))})"
            for t, ref, tried in missing[:5]
        ]
        raise DataError(
            export,
            f"{len(missing)} image file(s) not found: " + "; ".join(lines),
            fix="pass --images <folder holding them> (Label Studio's media folder, its "
            "upload/<project> folder, or your originals), or --skip-missing",
        )
    for task, ref, _ in missing:
        skip(report, task, f"image not found: {ref}")
    names = Counter(name for *_, name in found)
    return [
        (t, r, p, f"{Path(n).stem}_{t.get('id')}{Path(n).suffix}" if names[n] > 1 else n)
        for t, r, p, n in found
    ]


def import_labelstudio(export: Path, out: Path, options: Options) -> dict:
    """Imports ``export`` into ``out`` (see the module docstring); returns the report.

    Raises:
        DataError: an unreadable export, missing images, nothing to import.
        ConfigError: labels outside ``--classes``, a bad option.
    """
    report = {
        "export": str(export),
        "tasks": 0,
        "written": 0,
        "skipped": [],
        "multiple_annotations": [],
        "cancelled_annotations": 0,
        "other_results": 0,
        "overlap_pixels": 0,
        "turned_by_exif": 0,
        "overlap_rule": options.overlap,
        "unlabeled": options.unlabeled,
    }
    tasks = load_tasks(export)
    report["tasks"] = len(tasks)
    chosen = select(tasks, options, report)
    labels = [ls.region_label(r) for _, regions in chosen for r in regions]
    classes, lookup = class_lookup(labels, options)
    brushes = any(r.get("type") in ls.BRUSH for _, regions in chosen for r in regions)
    decode = ls.rle_decoder() if brushes else None
    pixels, sizes = np.zeros(256, np.int64), Counter()
    for task, regions, path, name in find_images(chosen, export, options, report):
        try:
            image, turned = ls.load_image(path)
            ids, overlap = paint(regions, lookup, *image.shape[:2], decode, options)
        except (SampleError, ls.RegionError) as err:
            skip(report, task, str(err))
            continue
        if turned is None:
            atomic_write(out / "images" / name, lambda f, p=path: f.write(p.read_bytes()))
        else:  # stored as displayed (EXIF orientation applied), losslessly
            name = f"{Path(name).stem}.png"
            atomic_write(out / "images" / name, lambda f, b=turned: f.write(b))
            report["turned_by_exif"] += 1
        mask_png(out / "masks" / f"{Path(name).stem}.png", ids, options.ignore_index)
        pixels += np.bincount(ids.ravel(), minlength=256)
        sizes[image.shape[:2]] += 1
        report["overlap_pixels"] += overlap
        report["written"] += 1
    if not report["written"]:
        raise DataError(export, "no task could be imported (see the warnings above)")
    report["label_pixels"] = {c: int(pixels[i]) for i, c in enumerate(classes)}
    report["unlabeled_pixels"] = int(pixels[options.ignore_index])
    report["train_command"] = write_dataset_yaml(out, classes, options, sizes, report)
    return report


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Options]:
    parser = argparse.ArgumentParser(
        prog="segbench import-labelstudio", description=__doc__.split("\n")[0]
    )
    parser.add_argument("export", type=Path, help="Label Studio JSON export")
    parser.add_argument(
        "out", type=Path, help="dataset folder to write (images/, masks/, dataset.yaml)"
    )
    parser.add_argument(
        "--images",
        type=Path,
        action="append",
        default=[],
        help="folder to look for the image files in (repeatable)",
    )
    parser.add_argument(
        "--classes", help="class names in id order: a,b,c or a yaml/json file with class_names"
    )
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="LABEL=CLASS",
        help="map a label to a class or to 'ignore' (repeatable)",
    )
    parser.add_argument(
        "--unlabeled", default=IGNORE, help="class of unlabelled pixels (default: ignore)"
    )
    parser.add_argument(
        "--overlap",
        choices=("later", IGNORE),
        default="later",
        help="pixels of overlapping regions: the later region wins, or ignore",
    )
    parser.add_argument("--ignore-index", type=int, default=255)
    parser.add_argument("--image-key", help="task data field holding the image (default: image)")
    parser.add_argument(
        "--skip-missing", action="store_true", help="skip tasks whose image is not found"
    )
    args = parser.parse_args(argv)
    options = Options(
        args.images,
        parse_classes(args.classes),
        parse_mapping(args.map),
        args.ignore_index,
        args.unlabeled,
        args.overlap,
        args.image_key,
        args.skip_missing,
    )
    return args, options


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    with exit_on_user_error():
        args, options = parse_args(argv)
        report = import_labelstudio(args.export, args.out, options)
    print(
        f"{report['written']} of {report['tasks']} tasks -> {args.out}/images, masks "
        f"({len(report['skipped'])} skipped, {len(report['multiple_annotations'])} with several "
        f"annotations, {report['cancelled_annotations']} cancelled annotations ignored, "
        f"{report['overlap_pixels']} overlapping pixels: rule '{report['overlap_rule']}')"
    )
    print(
        f"classes and report: {args.out / 'dataset.yaml'}\ntrain with:\n  {report['train_command']}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
