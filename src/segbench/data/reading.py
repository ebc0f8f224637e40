"""Reading dataset files: images, label maps and their errors, each naming the file."""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from segbench.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: The smallest H and W an image may have: what every segbench network takes
#: (``SegmentationNetwork.min_size``; not imported, so reading data needs no model zoo,
#: and tests/test_bad_inputs.py keeps the two equal).
MIN_SIZE = 32


class SampleError(DataError):
    """A problem with one file of a dataset; ``kind`` names the sort of damage.

    Kinds: ``missing_mask``, ``missing_image``, ``orphan_mask``, ``duplicate_name``,
    ``empty_file``, ``unreadable``, ``truncated``, ``mask_mode``, ``size_mismatch``,
    ``unknown_ids``, ``too_small``; the checker adds ``mixed_sizes`` and ``missing_split``.
    """

    def __init__(self, path: object, kind: str, problem: str, fix: str | None = None) -> None:
        super().__init__(path, problem, fix)
        self.kind, self.problem, self.fix = kind, problem, fix


def _open_error(path: Path, what: str, err: Exception) -> SampleError:
    """Classifies a PIL failure: empty, truncated or otherwise unreadable file."""
    if path.is_file() and path.stat().st_size == 0:
        return SampleError(
            path,
            "empty_file",
            f"{what} file is empty (0 bytes)",
            fix="re-extract or remove the file",
        )
    kind = "truncated" if "truncated" in str(err) or isinstance(err, EOFError) else "unreadable"
    return SampleError(
        path,
        kind,
        f"cannot be read as {'an' if what == 'image' else 'a'} {what} ({err})",
        fix="re-extract or remove the file",
    )


def image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image from its header, or raises SampleError naming the file."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except FileNotFoundError:
        raise SampleError(path, "missing_image", "image file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise _open_error(path, "image", err) from None


def check_size(path: Path, size: tuple[int, int]) -> None:
    """Refuses an image smaller than :data:`MIN_SIZE` on either side (a damaged or stray file)."""
    if min(size) < MIN_SIZE:
        raise SampleError(
            path,
            "too_small",
            f"image is {size[1]}x{size[0]} (WxH); segbench networks take H, W >= {MIN_SIZE}",
            fix="remove or replace the file",
        )


def read_image(path: Path) -> np.ndarray:
    """Reads an image as ``(H, W, 3)`` uint8 RGB, or raises SampleError naming the file."""
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except FileNotFoundError:
        raise SampleError(path, "missing_image", "image file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise _open_error(path, "image", err) from None


def read_label(path: Path) -> np.ndarray:
    """Reads a label map as ``(H, W)`` uint8 of raw values, or raises SampleError.

    Palette ("P") PNGs give their indices; greyscale ("L") their values. Colour
    or 16-bit masks are refused: their values are not label ids.
    """
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P"):
                raise SampleError(
                    path,
                    "mask_mode",
                    f"mask has image mode {img.mode!r}; expected single-channel "
                    "8-bit label ids (mode 'L' or 'P')",
                    fix="save masks as 8-bit greyscale or palette PNGs of class ids",
                )
            return np.array(img)
    except SampleError:
        raise
    except FileNotFoundError:
        raise SampleError(path, "missing_mask", "mask file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise _open_error(path, "mask", err) from None


def resize_pair(
    image: np.ndarray, mask: np.ndarray | None, height: int, width: int, crop_top: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    """Crops ``crop_top`` rows, then resizes image (bilinear) and mask (nearest) to ``height x width``."""
    image = cv2.resize(image[crop_top:], (width, height), interpolation=cv2.INTER_LINEAR)
    return image, None if mask is None else resize_mask(mask, height, width, crop_top)


def resize_mask(mask: np.ndarray, height: int, width: int, crop_top: int = 0) -> np.ndarray:
    """Crops ``crop_top`` rows, then resizes a label map (nearest: ids stay ids)."""
    return cv2.resize(mask[crop_top:], (width, height), interpolation=cv2.INTER_NEAREST)


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
