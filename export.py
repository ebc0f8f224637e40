"""Export a checkpoint: ``python export.py ckpt_path=<run>/checkpoints/best.ckpt [format=tensorrt]``.

Writes ``model.onnx`` (and a TensorRT engine), checks parity with PyTorch on
real images, optionally mIoU and latency per runtime, into ``export.json``.
"""

import hydra
from omegaconf import DictConfig

from segbench.config import run_checked
from segbench.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from segbench.deploy.export import export

    with exit_on_user_error():
        export(cfg)


if __name__ == "__main__":
    run_checked(main)
