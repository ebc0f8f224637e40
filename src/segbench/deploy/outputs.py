"""What prediction writes per frame: label-id PNGs, colour overlays with a legend, videos.

Every file is written whole or not at all (:mod:`segbench.files`) as soon as its
frame is done, so an interrupted run keeps every finished frame. The overlay is
:func:`segbench.evaluation.visualize.overlay_panels`' prediction panel (the one
overlay renderer), with a legend of the classes below it.
"""

import io
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from segbench.errors import ConfigError
from segbench.evaluation.visualize import overlay_panels
from segbench.files import atomic_write

log = logging.getLogger(__name__)

#: fourcc -> file suffix of the overlay video.
VIDEO_CODECS = {"mp4v": ".mp4", "avc1": ".mp4", "MJPG": ".avi", "XVID": ".avi"}


def legend(class_names: Sequence[str], colors: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """A white strip ``(h, width, 3)`` uint8 naming each class beside a swatch of its colour.

    Entries flow left to right and wrap to new rows; the text scales with ``width``.
    """
    size = max(10, min(24, width // 60))
    font = ImageFont.load_default(size=size)
    pad, swatch = size // 2, size
    entries = [(str(n), tuple(int(v) for v in c)) for n, c in zip(class_names, colors, strict=True)]
    widths = [swatch + pad + int(font.getlength(n)) + 2 * pad for n, _ in entries]
    rows: list[list[int]] = [[]]
    used = pad
    for i, w in enumerate(widths):
        if rows[-1] and used + w > width:
            rows.append([])
            used = pad
        rows[-1].append(i)
        used += w
    line = swatch + pad
    strip = Image.new("RGB", (width, pad + line * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for r, row in enumerate(rows):
        x, y = pad, pad + r * line
        for i in row:
            name, color = entries[i]
            draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], fill=color, outline=(0, 0, 0))
            draw.text(
                (x + swatch + pad // 2, y + swatch // 2),
                name,
                fill=(0, 0, 0),
                font=font,
                anchor="lm",
            )
            x += widths[i]
    return np.asarray(strip)


def overlay_image(
    image: torch.Tensor, labels: torch.Tensor, meta: dict, alpha: float
) -> np.ndarray:
    """The prediction over the image ``(H, W, 3)`` uint8, by the one overlay renderer.

    Args:
        image: One normalised image ``(3, H, W)`` (``meta``'s mean/std).
        labels: Its label map ``(H, W)``.
    """
    width = labels.shape[-1]
    # overlay_panels draws [image | first labels | second labels]; the last panel is ours.
    panel = overlay_panels(image[None], labels[None], labels[None], meta, alpha)[0]
    return panel[:, 2 * width :]


def write_png(path: Path, array: np.ndarray) -> Path:
    """Writes a uint8 ``(H, W)`` (greyscale) or ``(H, W, 3)`` (RGB) array as a PNG, atomically."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


class OverlayVideo:
    """An overlay video written frame by frame with OpenCV, renamed into place on :meth:`close`.

    Args:
        path: The video file (its suffix follows the codec).
        fps: Frames per second (the source video's).
        codec: A fourcc of :data:`VIDEO_CODECS`.
    """

    def __init__(self, path: Path, fps: float, codec: str = "mp4v") -> None:
        if codec not in VIDEO_CODECS:
            raise ConfigError(
                "video_codec",
                codec,
                "unknown video codec",
                allowed=VIDEO_CODECS,
                fix="mp4v writes .mp4 (any OpenCV build), MJPG writes .avi",
            )
        self.path = path.with_suffix(VIDEO_CODECS[codec])
        self.fps, self.codec = fps, codec
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # OpenCV writes the file by name: a hidden partial file, copied into place at the end.
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        """Appends one RGB frame (every frame must have the first one's size)."""
        if self.writer is None:
            h, w = rgb.shape[:2]
            self.writer = cv2.VideoWriter(
                str(self.tmp), cv2.VideoWriter_fourcc(*self.codec), self.fps, (w, h)
            )
            if not self.writer.isOpened():
                raise ConfigError(
                    "video_codec",
                    self.codec,
                    "this OpenCV build cannot write it",
                    allowed=VIDEO_CODECS,
                    fix="use video_codec=MJPG (.avi)",
                )
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> Path | None:
        """Finishes the file and moves it into place (None when no frame was written)."""
        if self.writer is None:
            return None
        self.writer.release()
        self.writer = None
        try:
            with open(self.tmp, "rb") as src:
                atomic_write(self.path, lambda f: shutil.copyfileobj(src, f))
        finally:
            self.tmp.unlink(missing_ok=True)
        log.info("overlay video: %s (%d frames at %.3g fps)", self.path, self.frames, self.fps)
        return self.path
