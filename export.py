"""Export a checkpoint: ``python export.py ckpt_path=<run>/checkpoints/best.ckpt [format=tensorrt]``.

Writes ``model.onnx`` (and a TensorRT engine), checks parity with PyTorch on
real images, optionally mIoU and latency per runtime, into ``export.json``.
"""

import hydra
from omegaconf import DictConfig

from segbench.config import run_checked
from segbench.errors import user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from segbench.exporting import export

    try:
        export(cfg)
    except Exception as err:  # a SegbenchError, possibly inside Hydra's InstantiationException
        if (user := user_error(err)) is None:
            raise
        raise SystemExit(f"error: {user}") from None


if __name__ == "__main__":
    run_checked(main)
