"""Errors a person can act on: what is wrong, the bad value, what is allowed, the fix."""

import contextlib
import difflib
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
        self.key, self.value = key, value


class DataError(SegbenchError, ValueError):
    """A dataset file or folder is missing, unreadable or inconsistent."""

    def __init__(self, path: object, problem: str, fix: str | None = None) -> None:
        message = f"{path}: {problem}"
        if fix:
            message += f"\n  fix: {fix}"
        super().__init__(message)
        self.path = path


def closest_first(value: object, allowed: Iterable[object]) -> list[str]:
    """Returns ``allowed`` as strings, the ones closest to ``value`` first."""
    options = [str(a) for a in allowed]
    close = difflib.get_close_matches(str(value), options, n=len(options), cutoff=0.0)
    return close + [o for o in options if o not in close]


def user_error(err: BaseException) -> SegbenchError | None:
    """The :class:`SegbenchError` behind ``err``, if any.

    Hydra's ``instantiate`` wraps what a constructor raises in an
    ``InstantiationException``; the entry points unwrap it so a bad dataset path
    still reads as one line naming the file and the fix.
    """
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, SegbenchError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


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
