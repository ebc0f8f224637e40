"""Evaluate a checkpoint: ``python evaluate.py ckpt_path=<run>/checkpoints/best.ckpt``."""

import hydra
from omegaconf import DictConfig

from segbench.config import run_checked
from segbench.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from segbench.evaluation.evaluate import evaluate

    with exit_on_user_error():
        evaluate(cfg)


if __name__ == "__main__":
    run_checked(main)
