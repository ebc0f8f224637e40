"""predict(cfg): label maps and colour overlays for your own images, folders and videos.

``python predict.py ckpt_path=<run>/checkpoints/best.ckpt source=<image | folder | 'glob' |
video>`` (also ``segbench predict ...``). No ground truth is needed: the images
are normalised with the checkpoint's own mean/std (exactly as in validation, so
the label maps equal evaluate's argmax), run through ``runtime`` (PyTorch, or the
ONNX / TensorRT file that export.py wrote), and written as they are done:

- ``masks/<name>.png``: label ids (8-bit greyscale, the class order of the checkpoint);
- ``overlays/<name>.png``: the prediction over the image in the dataset's colours, a
  legend below (for a video: ``<video>_overlay.mp4`` at the video's frame rate, the
  masks in ``masks/<video>/<frame>.png``);
- ``predict.json``: frames done, files skipped with the reason, frames/s.
"""

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from segbench.config import CONFIG_DIR, run_checked
from segbench.data.reading import resize_mask
from segbench.data.transforms import build_transform
from segbench.deploy.frames import Frame, FrameSource, open_source
from segbench.deploy.outputs import OverlayVideo, legend, overlay_image, write_png
from segbench.errors import ConfigError, exit_on_user_error
from segbench.files import write_json
from segbench.models import load_network
from segbench.runtimes import make_predictor
from segbench.runtimes.latency import time_callable

log = logging.getLogger(__name__)

STATIC_SIZE = ("resize", "refuse")


def predict(cfg: DictConfig) -> dict:
    """Predicts every frame of ``cfg.source`` and writes the outputs to ``cfg.out_dir``.

    Returns:
        The content of ``predict.json`` (also written when the run stops early).

    Raises:
        DataError: no usable source (missing, empty, unreadable video, not an image).
        ConfigError: a bad option, or a frame a static-size model cannot take with
            ``static_size=refuse``.
    """
    if cfg.static_size not in STATIC_SIZE:
        raise ConfigError("static_size", cfg.static_size, "unknown policy", allowed=STATIC_SIZE)
    net, hparams = load_network(cfg.ckpt_path)
    meta = hparams["data"]
    predictor = make_predictor(cfg.get("runtime"), net, cfg.device, cfg.get("model_path"))
    source = open_source(cfg.source)
    out = Path(cfg.out_dir)
    video = None
    if source.is_video and cfg.overlay:
        video = OverlayVideo(out / f"{source.video.stem}_overlay", source.fps, cfg.video_codec)
    run = _Run(predictor, meta, cfg, static_input_size(predictor))
    status, start = "stopped", time.monotonic()
    try:
        with progress_bar(len(source), cfg.progress) as advance:
            listed = len(source.skipped)  # files left out while listing are not in the total
            for batch in batches(source.frames(), cfg.batch_size):
                labels, images = run.infer(batch)
                for frame, ids, image in zip(batch, labels, images, strict=True):
                    run.write(out, frame, ids, image, video)
                advance(len(batch) + len(source.skipped) - listed)
                listed = len(source.skipped)
        status = "ok"
    finally:
        video_file = video.close() if video is not None else None
        summary = run.summary(source, out, video_file, time.monotonic() - start, status)
        write_json(out / "predict.json", summary)
    log.info("%d frames; outputs and predict.json in %s", summary["frames"], out)
    return summary


class _Run:
    """One prediction run: preprocessing, timed inference, per-frame writing, counts."""

    def __init__(self, predictor, meta: dict, cfg: DictConfig, fixed: tuple | None) -> None:
        if meta["num_classes"] > 255:
            raise ConfigError(
                "ckpt_path", cfg.ckpt_path, f"{meta['num_classes']} classes do not fit 8-bit masks"
            )
        self.predictor, self.meta, self.cfg, self.fixed = predictor, meta, cfg, fixed
        self.transform = build_transform(meta["mean"], meta["std"])
        self.frames, self.batches, self.network_ms = 0, 0, 0.0
        self.legends: dict[int, np.ndarray] = {}
        self.resized = False

    def normalise(self, batch: list[Frame], size: tuple[int, int] | None = None) -> torch.Tensor:
        """Normalised ``(N, 3, H, W)`` (resized bilinearly to ``size`` (H, W) if given)."""
        images = [f.image if size is None else cv2.resize(f.image, size[::-1]) for f in batch]
        return torch.stack([self.transform(image=im)["image"] for im in images])

    def infer(self, batch: list[Frame]) -> tuple[torch.Tensor, torch.Tensor]:
        """Label maps ``(N, H, W)`` of a batch of same-size frames, and their normalised images."""
        h, w = batch[0].image.shape[:2]
        images = inputs = self.normalise(batch)
        if self.fixed is not None and (h, w) != self.fixed:
            if self.cfg.static_size == "refuse":
                raise ConfigError(
                    "static_size",
                    "refuse",
                    f"{self.cfg.model_path} takes only {self.fixed[0]}x{self.fixed[1]} (H x W) "
                    f"images; {batch[0].name} is {h}x{w}",
                    fix="static_size=resize (frames are resized to the model's size and the "
                    "masks back), or export with dynamic=true / input_size=[H,W]",
                )
            if not self.resized:
                log.warning(
                    "the model takes %s only: resizing frames to it, masks back", self.fixed
                )
                self.resized = True
            inputs = self.normalise(batch, self.fixed)
        result = {}

        def run() -> None:
            result["labels"] = self.predictor(inputs).cpu()

        # One timed call per batch (the first after one untimed warm-up call).
        timing = time_callable(run, warmup=1 if self.batches == 0 else 0, runs=1)
        self.network_ms += timing["median_ms"]
        self.batches += 1
        self.frames += len(batch)
        labels = result["labels"].to(torch.uint8)
        if tuple(labels.shape[-2:]) != (h, w):
            labels = torch.stack([torch.from_numpy(resize_mask(m.numpy(), h, w)) for m in labels])
        return labels, images

    def write(self, out: Path, frame: Frame, ids: torch.Tensor, image: torch.Tensor, video) -> None:
        """Writes one frame's mask, and its overlay (a PNG, or a video frame)."""
        write_png(out / "masks" / f"{frame.name}.png", ids.numpy())
        if not self.cfg.overlay:
            return
        picture = overlay_image(image, ids.long(), self.meta, self.cfg.alpha)
        if self.cfg.legend:
            width = picture.shape[1]
            if width not in self.legends:
                self.legends[width] = legend(self.meta["class_names"], self.meta["colors"], width)
            picture = np.concatenate([picture, self.legends[width]], axis=0)
        if video is not None:
            video.write(picture)
        else:
            write_png(out / "overlays" / f"{frame.name}.png", picture)

    def summary(self, source: FrameSource, out: Path, video, wall_s: float, status: str) -> dict:
        """What ``predict.json`` holds."""
        per_frame = self.network_ms / self.frames if self.frames else None
        return {
            "status": status,
            "ckpt_path": str(self.cfg.ckpt_path),
            "source": source.source,
            "runtime": self.cfg.get("runtime") or "pytorch",
            "model_path": self.cfg.get("model_path"),
            "device": self.cfg.device,
            "frames": self.frames,
            "skipped": source.skipped,
            "out_dir": str(out),
            "overlay_video": None if video is None else str(video),
            "video_fps": source.fps if source.is_video else None,
            "class_names": list(self.meta["class_names"]),
            "batch_size": self.cfg.batch_size,
            "resized_to_model": list(self.fixed) if self.resized else None,
            "network_ms_per_frame": per_frame,
            "network_fps": 1e3 / per_frame if per_frame else None,
            "end_to_end_fps": self.frames / wall_s if self.frames and wall_s > 0 else None,
            "wall_s": round(wall_s, 3),
        }


def static_input_size(predictor) -> tuple[int, int] | None:
    """``(H, W)`` a runtime's model is fixed to (a static-size ONNX graph or engine), else None."""
    size = getattr(predictor, "static_size", None)
    if size is not None:
        return tuple(size)
    engine = getattr(predictor, "engine", None)
    if engine is not None:  # TensorRT: -1 marks a dynamic dimension
        h, w = tuple(engine.get_tensor_shape(predictor.input_name))[2:]
        return (h, w) if h > 0 and w > 0 else None
    return None


def batches(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    """Consecutive frames of the same H x W in batches of up to ``size``; a frame of
    another size starts a new batch (order kept)."""
    batch: list[Frame] = []
    for frame in frames:
        if batch and (len(batch) == size or frame.image.shape != batch[0].image.shape):
            yield batch
            batch = []
        batch.append(frame)
    if batch:
        yield batch


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance(n)``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("predict", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not enabled) as progress:
        task = progress.add_task("predict", total=total or None)
        yield lambda n: progress.advance(task, n)


def summary_line(summary: dict) -> str:
    """One line: frames done, skipped, frames/s (network and end to end), where the outputs are."""
    fps = summary["network_fps"]
    e2e = summary["end_to_end_fps"]
    return (
        f"{summary['frames']} frames ({len(summary['skipped'])} skipped) -> {summary['out_dir']}; "
        f"{summary['runtime']} on {summary['device']}: "
        + (f"{fps:.1f} frames/s network, {e2e:.1f} frames/s end to end" if fps else "no frames")
    )


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="predict")
def _main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        print(summary_line(predict(cfg)))


def main() -> None:
    """``segbench predict key=value ...``: the same as ``python predict.py``."""
    run_checked(_main)


if __name__ == "__main__":
    main()
