"""Predict on your own frames: ``python predict.py ckpt_path=<run>/checkpoints/best.ckpt source=<path>``.

``source`` is an image, a folder of images, a glob pattern or a video file. Writes
label-id masks, colour overlays with a legend (an overlay video for a video) and
``predict.json`` (frames/s) to the run dir, or ``out_dir=...``.
"""

import hydra
from omegaconf import DictConfig

from segbench.config import run_checked
from segbench.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from segbench.deploy.predict import predict, summary_line

    with exit_on_user_error():
        print(summary_line(predict(cfg)))


if __name__ == "__main__":
    run_checked(main)
