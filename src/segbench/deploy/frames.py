"""Frames to predict on: one image, a folder, a glob pattern or a video file.

:func:`open_source` checks the source before any network runs (a missing path,
an empty folder, a glob matching nothing, an unreadable video or a file that is
no image fail at once, naming it); while frames are read, an image that turns
out damaged is logged and recorded in :attr:`FrameSource.skipped`, and the
frames around it go on.
"""

import glob
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segbench.data.reading import IMAGE_SUFFIXES, SampleError, read_image
from segbench.errors import DataError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
SOURCE_FIX = "pass source=<image file | folder of images | 'glob/*.jpg' | video file>"


@dataclass
class Frame:
    """One RGB frame ``(H, W, 3)`` uint8 and the name its outputs take (no suffix)."""

    name: str
    image: np.ndarray


@dataclass
class FrameSource:
    """Where frames come from: image files (in order) or one video."""

    source: str
    images: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    video: Path | None = None
    fps: float = 0.0
    frame_count: int | None = None
    #: ``{"path": ..., "reason": ...}`` of every file left out, as they are found.
    skipped: list[dict] = field(default_factory=list)

    @property
    def is_video(self) -> bool:
        return self.video is not None

    def __len__(self) -> int:
        return (self.frame_count or 0) if self.is_video else len(self.images)

    def frames(self) -> Iterator[Frame]:
        """Reads the frames one by one; a damaged image is skipped (logged, recorded)."""
        if self.is_video:
            yield from self._video_frames()
            return
        for path, name in zip(self.images, self.names, strict=True):
            try:
                yield Frame(name, read_image(path))
            except SampleError as err:
                self.skip(path, err.problem)

    def _video_frames(self) -> Iterator[Frame]:
        capture = cv2.VideoCapture(str(self.video))
        try:
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield Frame(f"{self.video.stem}/{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                index += 1
        finally:
            capture.release()
        if self.frame_count and index < self.frame_count:
            log.warning(
                "%s: the container announced %d frames, %d could be decoded",
                self.video,
                self.frame_count,
                index,
            )

    def skip(self, path: object, reason: str) -> None:
        log.warning("skipping %s: %s", path, reason)
        self.skipped.append({"path": str(path), "reason": reason})


def open_source(source: str) -> FrameSource:
    """Lists the frames ``source`` names and checks that there are some.

    Raises:
        DataError: a missing path, a folder without images, a glob matching no
            image, an unreadable video, or a file that is neither image nor video.
    """
    text = str(source)
    path = Path(text).expanduser()
    if not path.exists() and glob.has_magic(text):
        matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True))
        files = [p for p in matches if p.is_file()]
        if not files:
            raise DataError(text, "the pattern matches no file", fix=SOURCE_FIX)
        return _image_list(text, files, what="files matching the pattern")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        return _image_list(text, files, what="files in the folder")
    if not path.is_file():
        raise DataError(path, "source not found", fix=SOURCE_FIX)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return _video(path)
    if suffix not in IMAGE_SUFFIXES:
        raise DataError(
            path,
            f"is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a video "
            f"({', '.join(VIDEO_SUFFIXES)})",
            fix=SOURCE_FIX,
        )
    return FrameSource(text, images=[path], names=[path.stem])


def _image_list(source: str, files: list[Path], what: str) -> FrameSource:
    """A source of the image files among ``files``; the others are logged as skipped."""
    result = FrameSource(source)
    for p in files:
        if p.suffix.lower() in IMAGE_SUFFIXES:
            result.images.append(p)
        elif p.suffix.lower() in VIDEO_SUFFIXES:
            result.skip(p, "a video among images: pass it on its own as source=<video file>")
        else:
            result.skip(p, f"not an image file ({', '.join(IMAGE_SUFFIXES)})")
    if not result.images:
        raise DataError(
            source,
            f"no image among the {len(files)} {what}" if files else f"no {what}",
            fix=SOURCE_FIX,
        )
    result.names = output_names(result.images)
    return result


def output_names(paths: list[Path]) -> list[str]:
    """Output names of image files: their stems, with sub-folders kept where the
    files come from several folders, and the suffix added where stems still collide."""
    parents = {p.parent for p in paths}
    base = Path(os.path.commonpath([str(p) for p in parents])) if len(parents) > 1 else None
    names = [(p.relative_to(base).with_suffix("").as_posix() if base else p.stem) for p in paths]
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return [
        f"{n}_{p.suffix.lstrip('.').lower()}" if seen[n] > 1 else n
        for n, p in zip(names, paths, strict=True)
    ]


def _video(path: Path) -> FrameSource:
    capture = cv2.VideoCapture(str(path))
    try:
        ok = capture.isOpened() and capture.grab()
        fps = capture.get(cv2.CAP_PROP_FPS) if ok else 0.0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if ok else 0
    finally:
        capture.release()
    if not ok:
        raise DataError(
            path,
            "cannot be read as a video (OpenCV/FFmpeg decodes no frame from it)",
            fix="check the file plays, or convert it (e.g. ffmpeg -i in.mov -c:v libx264 out.mp4)",
        )
    if not fps or fps != fps or fps > 1000:
        log.warning("%s: no frame rate in the container; the overlay video uses 25 fps", path)
        fps = 25.0
    return FrameSource(str(path), video=path, fps=fps, frame_count=count if count > 0 else None)
