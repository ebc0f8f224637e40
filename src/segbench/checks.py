"""Type and range checks of config values, each failing with the key, the value and the fix.

Values typed on the command line arrive as whatever YAML makes of them
(``trainer.max_epochs=abc`` is a string): these checks run before anything is
built, so a wrong value is named instead of surfacing as a stack trace deep in
Lightning, PyTorch or a DataLoader.
"""

import math
from collections.abc import Sequence

from segbench.errors import ConfigError


def require_int(
    key: str, value: object, minimum: int, fix: str, also: Sequence[object] = ()
) -> None:
    """Refuses ``value`` unless it is a whole number >= ``minimum`` (or one of ``also``)."""
    if value in also and not isinstance(value, bool):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = "".join(f" or {'null' if a is None else a}" for a in also)
        raise ConfigError(key, value, f"must be a whole number >= {minimum}{extra}", fix=fix)


def require_number(
    key: str,
    value: object,
    fix: str,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_min: bool = False,
    exclusive_max: bool = False,
) -> None:
    """Refuses ``value`` unless it is a finite number within the given bounds."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if exclusive_min else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if exclusive_max else value <= maximum
    if not ok:
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>' if exclusive_min else '>='} {minimum:g}")
        if maximum is not None:
            bounds.append(f"{'<' if exclusive_max else '<='} {maximum:g}")
        what = "a finite number" + (f" {' and '.join(bounds)}" if bounds else "")
        raise ConfigError(key, value, f"must be {what}", fix=fix)


def require_size(key: str, value: object, minimum: int, fix: str) -> tuple[int, int]:
    """Refuses ``value`` unless it is ``[H, W]`` of whole numbers >= ``minimum``; returns it."""
    try:
        height, width = value  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ConfigError(key, value, "must be [H, W]", fix=fix) from None
    for side in (height, width):
        if isinstance(side, bool) or not isinstance(side, int) or side < minimum:
            raise ConfigError(key, value, f"H and W must be whole numbers >= {minimum}", fix=fix)
    return height, width
