"""Pretrained encoder weights, from local files only: a path, or the HF/torch caches.

Nothing here reaches the network unless the user unsets ``HF_HUB_OFFLINE``:
a missing file fails at once with what was looked for and where. The names a
backbone offers (``imagenet``, ``instagram``) are its yaml's ``named_weights``.
"""

import logging
import os
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from segbench.errors import ConfigError
from segbench.models.backbones import smp_encoder_name

log = logging.getLogger(__name__)

NO_WEIGHTS_FIX = "backbone.weights=null trains the encoder from scratch"


def load_encoder_weights(encoder: nn.Module, backbone: dict) -> bool:
    """Loads ``backbone.weights`` (a name of ``named_weights``, or a local file) into ``encoder``.

    Returns:
        Whether weights were loaded.
    """
    weights = backbone.get("weights")
    if weights is None:
        return False
    load_pretrained(encoder, backbone, Path(str(weights)) if _is_path(weights) else weights)
    return True


def _is_path(weights: object) -> bool:
    text = str(weights)
    return "/" in text or text.endswith((".pth", ".pt", ".safetensors", ".bin"))


def load_pretrained(encoder: nn.Module, backbone: dict, weights: str | Path) -> None:
    """Loads named or file weights into an smp encoder.

    Raises:
        ConfigError: unknown name, missing file, or weights not in the local cache.
    """
    state = _read_file(weights) if isinstance(weights, Path) else _named(backbone, weights)
    # smp's timm-universal encoders keep the timm model under ``.model``; a file may
    # hold either's keys. (Not "most keys match": a truncated encoder has fewer.)
    candidates = [
        encoder,
        *([encoder.model] if isinstance(getattr(encoder, "model", None), nn.Module) else []),
    ]
    target = max(candidates, key=lambda module: _matches(module, state))
    missing, unexpected = target.load_state_dict(state, strict=False)
    loaded = len(state) - len(unexpected)
    if loaded == 0:
        raise ConfigError(
            "backbone.weights",
            str(weights),
            f"none of its {len(state)} tensors match the {backbone['name']} encoder",
            fix=f"give weights of this backbone, or {NO_WEIGHTS_FIX}",
        )
    log.info(
        "encoder weights %s: %d tensors loaded, %d missing, %d unexpected",
        weights,
        loaded,
        len(missing),
        len(unexpected),
    )


def _matches(module: nn.Module, state: dict) -> int:
    keys = set(module.state_dict())
    return sum(k in keys for k in state)


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(
            "backbone.weights",
            str(path),
            "no such file",
            fix=f"give the path of a .pth/.safetensors state dict, or {NO_WEIGHTS_FIX}",
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def _named(backbone: dict, weights: str) -> dict[str, torch.Tensor]:
    allowed = list(backbone.get("named_weights") or [])
    if weights not in allowed:
        raise ConfigError(
            "backbone.weights",
            weights,
            f"no such named weights for backbone {backbone['name']}",
            allowed=allowed,
            fix=f"give a local file path, or {NO_WEIGHTS_FIX}",
        )
    name = smp_encoder_name(backbone)
    cache = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    try:
        encoder = smp.encoders.get_encoder(name, in_channels=3, depth=5, weights=weights)
    except Exception as err:  # hub, timm and smp each raise their own kind
        raise ConfigError(
            "backbone.weights",
            weights,
            f"the {weights} weights of {name} are not in the local cache ({cache}/hub); "
            f"segbench does not download at run time ({type(err).__name__}: {str(err)[:200]})",
            fix=(
                "download once where the network is reachable (e.g. "
                '`HF_HUB_OFFLINE=0 python -c "import segmentation_models_pytorch as smp; '
                f"smp.encoders.get_encoder('{name}', weights='{weights}')\"`) and copy the "
                f"cache here, or give a file path, or {NO_WEIGHTS_FIX}"
            ),
        ) from None
    return encoder.state_dict()
