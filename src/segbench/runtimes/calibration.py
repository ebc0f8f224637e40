"""INT8 calibration data: normalised training images in fixed-size batches.

Shared by the INT8 builds (TensorRT's entropy calibrator, ONNX Runtime's static
quantisation), which must calibrate on the training split, never on the split
that is scored afterwards.
"""

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from segbench.errors import ConfigError


class CalibrationBatches:
    """The INT8 calibration data: normalised dataset images in fixed-size batches.

    Images come through the dataset's evaluation transform (the same
    normalisation as training), so the calibrated activation ranges are the ones
    the deployed model sees. ``num_images`` of the dataset are taken evenly
    spaced over it (a video split's first frames are one street; its spread is
    the whole drive). Images of another size are resized (bilinear) to
    ``input_size``, the calibration shape. Plain Python and torch: testable
    without TensorRT or ONNX Runtime.

    Args:
        dataset: Items are dicts with a normalised ``image`` ``(3, H, W)``.
        input_size: ``(H, W)`` of every batch.
        batch_size: Images per batch (the last partial batch is dropped, since
            TensorRT calibrates with one fixed batch size).
        num_images: Use this many images (``None``: all).
        key: The config key ``num_images`` came from (for the error message).
    """

    def __init__(
        self,
        dataset,
        input_size: Sequence[int],
        batch_size: int = 8,
        num_images: int | None = 64,
        key: str = "calibration.images",
    ) -> None:
        available = len(dataset)
        count = available if num_images is None else min(num_images, available)
        if count < batch_size:
            raise ConfigError(
                key,
                num_images,
                f"gives {count} images, fewer than one batch of {batch_size}",
                fix="use more calibration images or a smaller calibration batch size",
            )
        self.dataset, self.input_size = dataset, tuple(int(s) for s in input_size)
        self.batch_size, self.num_batches = batch_size, count // batch_size
        spread = np.linspace(0, available - 1, count).round().astype(int)
        #: Dataset indices read, in order: evenly spaced, whole batches only.
        self.indices = [int(i) for i in spread[: self.num_batches * batch_size]]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.batch_size, 3, *self.input_size)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[np.ndarray]:
        for b in range(self.num_batches):
            chunk = self.indices[b * self.batch_size : (b + 1) * self.batch_size]
            images = [self._image(i) for i in chunk]
            yield np.ascontiguousarray(torch.stack(images).numpy(), dtype=np.float32)

    def _image(self, index: int) -> torch.Tensor:
        image = self.dataset[index]["image"].float()
        if tuple(image.shape[-2:]) != self.input_size:
            image = F.interpolate(
                image[None], size=self.input_size, mode="bilinear", align_corners=False
            )[0]
        return image


def ort_reader(batches: CalibrationBatches, input_name: str = "images"):
    """``batches`` as ONNX Runtime's ``CalibrationDataReader`` (``get_next() -> {input: array}``).

    ``rewind()`` starts over, so one reader serves calibration and the layer
    comparison alike.
    """
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self.batches = iter(batches)

        def __len__(self) -> int:
            return len(batches)

    return Reader()
