"""segbench: train, compare and deploy semantic-segmentation networks.

The model zoo (:mod:`segbench.models`) is plain PyTorch; training stands on
Lightning and Hydra; evaluation and export rebuild networks from a checkpoint
alone.
"""

from segbench.env import set_offline_defaults
from segbench.sweep import register_resolvers

set_offline_defaults()
register_resolvers()  # ${sweep_group:...} and ${run_name:...} in conf/logger/wandb.yaml

__version__ = "0.1.0"
