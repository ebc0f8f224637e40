"""The model zoo: plain ``nn.Module`` networks, no Lightning or Hydra needed.

Build one from a config dict with :func:`build_network`, or rebuild a trained one
from a segbench checkpoint with :func:`load_network` (which never runs code
stored in the file).
"""

from segbench.models.base import SegmentationNetwork
from segbench.models.build import build_network, network_class
from segbench.models.checkpoint import load_network, read_checkpoint
from segbench.models.compat import check_compatible
from segbench.models.erfnet import ERFNet
from segbench.models.fcn import FCN
from segbench.models.segnet import SegNet
from segbench.models.smp_models import DeepLabV3Plus, PSPNet, Unet

__all__ = [
    "FCN",
    "DeepLabV3Plus",
    "ERFNet",
    "PSPNet",
    "SegNet",
    "SegmentationNetwork",
    "Unet",
    "build_network",
    "check_compatible",
    "load_network",
    "network_class",
    "read_checkpoint",
]
