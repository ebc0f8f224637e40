"""Reading a Label Studio JSON export: tasks, the annotation that counts, image files, regions.

The export is a list of tasks (https://labelstud.io/guide/task_format)::

    {"id": 1, "data": {"image": "/data/upload/3/3f2a9c1b-frame_0001.png"},
     "annotations": [{"id": 10, "was_cancelled": false, "ground_truth": false,
                      "updated_at": "...", "result": [<region>, ...]}], ...}

A region (``result`` item) has ``type``, ``original_width``/``original_height`` and a
``value``: ``brushlabels`` regions hold ``{"format": "rle", "rle": [...],
"brushlabels": [name]}`` in Label Studio's RLE (decoded here by Label Studio's own
converter package, ``label_studio_converter.brush.decode_rle``), ``polygonlabels``
regions ``{"points": [[x%, y%], ...], "polygonlabels": [name]}`` in percent of the
image size (https://labelstud.io/tags/brushlabels, https://labelstud.io/tags/polygonlabels).
"""

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np
from PIL import Image, ImageOps

from segbench.data.reading import read_image
from segbench.errors import ConfigError

#: Label Studio prefixes uploaded files with 8 hex digits and a dash.
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
BRUSH, POLYGON = ("brushlabels", "brush"), ("polygonlabels", "polygon")
LABEL_KEYS = ("brushlabels", "polygonlabels", "labels")


@dataclass
class Region:
    """One labelled region: its label name and its pixels ``(H, W)`` bool."""

    label: str
    mask: np.ndarray


class RegionError(ValueError):
    """A region that cannot be turned into pixels (the task is skipped with the reason)."""


def choose_annotation(task: dict) -> tuple[dict | None, str]:
    """The annotation of ``task`` that is imported, and why (or why none).

    Cancelled (skipped) annotations never count. Of the rest, one marked
    ``ground_truth`` wins, then the most recently updated (``updated_at``, then
    ``created_at``, then the highest id).
    """
    annotations = task.get("annotations") or []
    usable = [a for a in annotations if not a.get("was_cancelled")]
    if not usable:
        return None, "only cancelled annotations" if annotations else "no annotation"

    def rank(a: dict) -> tuple:
        return (
            bool(a.get("ground_truth")),
            str(a.get("updated_at") or a.get("created_at") or ""),
            a.get("id") or 0,
        )

    best = max(usable, key=rank)
    if len(usable) == 1:
        return best, "the only annotation"
    why = "ground truth" if best.get("ground_truth") else "most recently updated"
    return best, f"{why} of {len(usable)} annotations"


def image_reference(task: dict, key: str | None = None) -> str:
    """The image path or URL of a task (``data[key]``; default ``image``, or the only value)."""
    data = task.get("data") or {}
    if key is None:
        key = "image" if "image" in data else (next(iter(data)) if len(data) == 1 else None)
    if key is None or key not in data:
        raise ConfigError(
            "--image-key",
            key,
            f"task {task.get('id')} has no such data field",
            allowed=list(data),
            fix='name the field of your labeling config\'s <Image value="$...">',
        )
    return str(data[key])


def reference_paths(ref: str) -> list[str]:
    """Relative paths under which the file of an image reference may be found, best first.

    ``/data/upload/<project>/<hex>-<name>`` (uploads: the media folder's
    ``upload/<project>/<hex>-<name>``, or the original ``<name>``),
    ``/data/local-files/?d=<path>`` (local storage: ``<path>`` under its document
    root), URLs (``s3://``, ``https://``: the last path component) and plain paths.
    """
    parsed = urlparse(ref)
    if parsed.path.startswith("/data/local-files") and "d" in parse_qs(parsed.query):
        path = unquote(parse_qs(parsed.query)["d"][0])
        return [path, Path(path).name, "/" + path.lstrip("/")]
    path = unquote(parsed.path)
    name = Path(path).name
    if path.startswith("/data/upload/"):
        rest = path.removeprefix("/data/")
        return [rest, rest.removeprefix("upload/"), name, UPLOAD_PREFIX.sub("", name)]
    if parsed.scheme and parsed.scheme != "file":
        return [name, UPLOAD_PREFIX.sub("", name)]
    return [path, name, UPLOAD_PREFIX.sub("", name)]


def resolve_image(ref: str, folders: list[Path]) -> tuple[Path | None, list[Path]]:
    """The image file of ``ref`` in ``folders`` (or as an existing path); also what was tried."""
    candidates = reference_paths(ref)
    tried = [Path(c) for c in candidates if Path(c).is_absolute()]
    tried += [folder / c.lstrip("/") for folder in folders for c in candidates]
    for path in tried:
        if path.is_file():
            return path, tried
    return None, tried


def output_name(ref: str) -> str:
    """The file name a sample takes: the original name, without Label Studio's upload prefix."""
    return UPLOAD_PREFIX.sub("", Path(reference_paths(ref)[0]).name)


def load_image(path: Path) -> tuple[np.ndarray, bytes | None]:
    """An image as Label Studio showed it: RGB ``(H, W, 3)``, and PNG bytes to store
    instead of the file where its EXIF orientation turns it (None: copy the file).

    Browsers, so Label Studio, display a photo turned by its EXIF orientation and the
    regions are drawn on that; segbench reads pixels as stored, so such an image is
    written turned.

    Raises:
        SampleError: the file is missing or cannot be read as an image.
    """
    image = read_image(path)
    try:
        with Image.open(path) as raw:
            if raw.getexif().get(0x0112, 1) in (None, 1):
                return image, None
            turned = ImageOps.exif_transpose(raw).convert("RGB")
    except OSError:
        return image, None
    buffer = io.BytesIO()
    turned.save(buffer, format="PNG")
    return np.asarray(turned), buffer.getvalue()


def region_label(result: dict) -> str | None:
    """The label name of a region (the first, if it carries several), or None."""
    value = result.get("value") or {}
    for key in LABEL_KEYS:
        if value.get(key):
            return str(value[key][0])
    return None


def is_region(result: dict) -> bool:
    """Whether a result item is a brush or polygon region (other tags are not imported)."""
    return result.get("type") in (*BRUSH, *POLYGON)


def region_pixels(result: dict, height: int, width: int, decode_rle: Callable | None) -> np.ndarray:
    """The pixels ``(H, W)`` bool of a brush or polygon region on an image of that size.

    Raises:
        RegionError: the region was drawn on an image of another size, or its
            data cannot be read.
    """
    size = (result.get("original_height"), result.get("original_width"))
    if size != (None, None) and size != (height, width):
        raise RegionError(
            f"region {result.get('id')} was drawn on a {size[1]}x{size[0]} image, "
            f"the file is {width}x{height}"
        )
    value = result.get("value") or {}
    if result.get("type") in BRUSH:
        if value.get("format", "rle") != "rle" or "rle" not in value:
            raise RegionError(f"brush region {result.get('id')} has no RLE data")
        flat = decode_rle(value["rle"])
        if flat.size != height * width * 4:
            raise RegionError(
                f"brush region {result.get('id')} decodes to {flat.size} values, "
                f"expected {height}x{width}x4"
            )
        return flat.reshape(height, width, 4)[..., 3] > 0  # the alpha channel
    points = np.asarray(value.get("points") or [], dtype=np.float64)
    if points.ndim != 2 or len(points) < 3:
        raise RegionError(f"polygon region {result.get('id')} has fewer than 3 points")
    # Percent of the image size -> pixel coordinates (0 = the image's left/top edge); a
    # pixel is in the region when its centre is inside the polygon (within its bounding box).
    from matplotlib.path import Path as Polygon

    xy = points * [width / 100, height / 100]
    (x0, y0), (x1, y1) = np.floor(xy.min(0)).astype(int), np.ceil(xy.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    mask = np.zeros((height, width), bool)
    if x1 > x0 and y1 > y0:
        ys, xs = np.mgrid[y0:y1, x0:x1]
        centres = np.column_stack([xs.ravel() + 0.5, ys.ravel() + 0.5])
        mask[y0:y1, x0:x1] = Polygon(xy).contains_points(centres).reshape(ys.shape)
    return mask


def rle_decoder() -> Callable:
    """Label Studio's RLE decoder (``label_studio_converter.brush.decode_rle``), imported lazily.

    Raises:
        ConfigError: the package is not installed, saying how to get it.
    """
    try:
        from label_studio_converter.brush import decode_rle
    except ImportError:
        raise ConfigError(
            "import-labelstudio",
            "brushlabels",
            "brush regions are decoded with Label Studio's own converter package "
            "(label-studio-converter), which is not installed here",
            fix="pip install -e '.[labelstudio]' (label-studio-converter==0.0.59)",
        ) from None
    return decode_rle
