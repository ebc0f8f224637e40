"""segbench: train, compare and deploy semantic-segmentation networks.

The model zoo (:mod:`segbench.models`) is plain PyTorch; training stands on
Lightning and Hydra; evaluation and export rebuild networks from a checkpoint
alone.
"""

from segbench.env import set_offline_defaults

set_offline_defaults()

__version__ = "0.1.0"
