"""Evaluate a checkpoint: ``python evaluate.py ckpt_path=<run>/checkpoints/best.ckpt``."""

import hydra
from omegaconf import DictConfig

from segbench.config import run_checked
from segbench.errors import SegbenchError


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from segbench.evaluation import evaluate

    try:
        evaluate(cfg)
    except SegbenchError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    run_checked(main)
