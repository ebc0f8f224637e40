"""Errors a person can act on: what is wrong, the bad value, what is allowed, the fix."""

import contextlib
import difflib
import re
import sys
from collections.abc import Iterable


class SegbenchError(Exception):
    """Base class of segbench's user-facing errors (printed without a traceback)."""


class ConfigError(SegbenchError, ValueError):
    """A configuration key holds a value segbench cannot use."""

    def __init__(
        self,
        key: str,
        value: object,
        problem: str,
        allowed: Iterable[object] | None = None,
        fix: str | None = None,
    ) -> None:
        message = f"{key}={value!r}: {problem}"
        if allowed is not None:
            message += f"\n  allowed: {', '.join(closest_first(value, allowed))}"
        if fix:
            message += f"\n  fix: {fix}"
        super().__init__(message)
        self.key, self.value, self.problem, self.fix = key, value, problem, fix


class DataError(SegbenchError, ValueError):
    """A dataset file or folder is missing, unreadable or inconsistent."""

    def __init__(self, path: object, problem: str, fix: str | None = None) -> None:
        message = f"{path}: {problem}"
        if fix:
            message += f"\n  fix: {fix}"
        super().__init__(message)
        self.path, self.problem, self.fix = path, problem, fix


def closest_first(value: object, allowed: Iterable[object]) -> list[str]:
    """Returns ``allowed`` as strings, the ones closest to ``value`` first."""
    options = [str(a) for a in allowed]
    close = difflib.get_close_matches(str(value), options, n=len(options), cutoff=0.0)
    return close + [o for o in options if o not in close]


def user_error(err: BaseException) -> SegbenchError | None:
    """The :class:`SegbenchError` behind ``err``, if any.

    Hydra's ``instantiate`` wraps what a constructor raises in an
    ``InstantiationException``; the entry points unwrap it so a bad dataset path
    still reads as one line naming the file and the fix. Likewise a segbench error
    raised in a DataLoader worker (which PyTorch re-raises in the main process as a
    ``RuntimeError`` holding the worker's traceback as text) and a required config
    value left at ``???`` (OmegaConf's ``MissingMandatoryValue``).
    """
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, SegbenchError):
            return err
        found = from_worker(err) or missing_value(err)
        if found is not None:
            return found
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


_WORKER = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")
_RAISED = re.compile(r"^(segbench(?:\.\w+)+)\.(\w+): ", re.MULTILINE)


def from_worker(err: BaseException) -> SegbenchError | None:
    """The segbench error a DataLoader worker raised, from PyTorch's re-raised text.

    PyTorch cannot rebuild exceptions whose constructor takes several arguments,
    so it raises ``RuntimeError("Caught SampleError in DataLoader worker process 0.
    Original Traceback ...")``: the message is the last ``segbench.<module>.<Error>: ...``
    of that text, and it is only taken if that class is a segbench error.
    """
    text = str(err)
    if not _WORKER.match(text):
        return None
    raised = list(_RAISED.finditer(text))
    if not raised:
        return None
    module, name = raised[-1].groups()
    cls = getattr(sys.modules.get(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, SegbenchError)):
        return None
    return SegbenchError(text[raised[-1].end() :].strip())


#: What to put for a required value the config leaves at ``???``.
REQUIRED_EXAMPLES = {
    "ckpt_path": "<run dir>/checkpoints/best.ckpt",
    "data.root": "<dataset folder>",
}


def missing_value(err: BaseException) -> SegbenchError | None:
    """A ``ConfigError`` for OmegaConf's ``MissingMandatoryValue`` (a ``???`` left unset)."""
    if type(err).__name__ != "MissingMandatoryValue" or not type(err).__module__.startswith(
        "omegaconf"
    ):
        return None
    key = getattr(err, "full_key", None) or "?"
    example = REQUIRED_EXAMPLES.get(key, "<value>")
    return ConfigError(
        key, "???", "is required and not set", fix=f"add {key}={example} to the command line"
    )


@contextlib.contextmanager
def exit_on_user_error():
    """Ends the program with ``error: <message>`` (exit code 1) on a segbench error.

    What the entry points wrap their work in: a :class:`SegbenchError`, also one
    Hydra's ``instantiate`` wrapped, reads as one line naming the key or file and
    the fix; any other exception keeps its traceback.
    """
    try:
        yield
    except Exception as err:
        if (user := user_error(err)) is None:
            raise
        raise SystemExit(f"error: {user}") from None
