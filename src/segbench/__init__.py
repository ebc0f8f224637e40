"""segbench: train, compare and deploy semantic-segmentation networks.

The package is layered; each layer imports only the ones above it in this list:

- ``errors``, ``env``, ``files``, ``config``: user-facing errors, offline defaults,
  atomic file writes, Hydra config helpers;
- ``models``, ``data``: plain PyTorch networks and datasets (no Lightning, no Hydra);
- ``runtimes``: running a network (PyTorch, ONNX Runtime, TensorRT) and timing it;
- ``profiling``, ``evaluation``: cost (params, FLOPs, latency, budget) and accuracy;
- ``deploy``: export to ONNX / TensorRT with parity and accuracy checks;
- ``training``: Lightning module, losses, callbacks, loggers, sweeps, resume.
"""

from segbench.env import register_path_resolvers, set_offline_defaults

set_offline_defaults()
register_path_resolvers()

__version__ = "0.1.0"
