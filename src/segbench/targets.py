"""Resolving a config's ``_target_`` to a class without trusting the config.

Hydra's ``instantiate`` imports and calls whatever a ``_target_`` names. That is
right for the user's own configs and wrong for configs read back from a file
someone sent (a checkpoint): there, only segbench's own classes may be named.
"""

import importlib

from segbench.errors import ConfigError


def resolve_class(target: str, base: type, prefix: str, key: str, trusted: bool = True) -> type:
    """The subclass of ``base`` that ``target`` (``module.Class``) names.

    Args:
        target: Dotted path of the class.
        base: The class it must be (or derive from).
        prefix: Modules an untrusted target may be imported from (e.g. ``segbench.models.``).
        key: The config key, for the error message.
        trusted: The config is the user's own. If not, only targets under
            ``prefix`` are imported; any other must name a subclass already imported.

    Raises:
        ConfigError: the target cannot be imported, is not a ``base``, or is not allowed.
    """
    target = str(target)
    if not trusted and not target.startswith(prefix):
        loaded = {f"{c.__module__}.{c.__qualname__}": c for c in subclasses(base)}
        if target in loaded:
            return loaded[target]
        raise ConfigError(
            key,
            target,
            f"is not a segbench class: a stored config may only name classes of {prefix[:-1]} "
            "(nothing else is imported or run from it)",
            fix="use a file written by segbench",
        )
    module_name, _, attr = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(
            key, target, "cannot be imported", fix=f"name a class of {prefix[:-1]}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(key, target, f"is not a segbench {base.__name__}")
    return cls


def subclasses(cls: type) -> list[type]:
    """Every class deriving from ``cls`` that is imported now."""
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *subclasses(sub)]
    return found


def stored_target_allowed(target: object, prefix: str, base: type | None) -> bool:
    """Whether a ``_target_`` read from a file may be used, decided without importing anything.

    Allowed: a dotted name under ``prefix`` (segbench's own modules), or the name of
    an already-imported subclass of ``base``. Anything else (``os.system``,
    ``builtins.exec``, a module outside segbench) is not.
    """
    if not isinstance(target, str) or not all(p.isidentifier() for p in target.split(".")):
        return False
    if target.startswith(prefix):
        return True
    return base is not None and target in {
        f"{c.__module__}.{c.__qualname__}" for c in subclasses(base)
    }
