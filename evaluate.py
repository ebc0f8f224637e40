"""Evaluate a checkpoint: ``python evaluate.py ckpt_path=<run>/checkpoints/best.ckpt``."""

import hydra
from omegaconf import DictConfig

from segbench.config import run_checked
from segbench.errors import user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from segbench.evaluation import evaluate

    try:
        evaluate(cfg)
    except Exception as err:  # a SegbenchError, possibly inside Hydra's InstantiationException
        if (user := user_error(err)) is None:
            raise
        raise SystemExit(f"error: {user}") from None


if __name__ == "__main__":
    run_checked(main)
