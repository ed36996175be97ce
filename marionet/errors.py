"""User-facing errors.

A ``MarionetError`` is a problem with the user's input (a missing or corrupt file, a checkpoint that
does not match its config, ...). The CLI prints its message on one line and exits with status 2;
anything else is a bug and keeps its traceback.
"""
import importlib


class MarionetError(Exception):
    """Bad input: the message names the file and the problem, on one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(MarionetError, ValueError):
    """A config value a network cannot be built with (raised by constructors; ``build_model`` adds
    the config file's name). Also a ValueError, for callers that build networks directly."""


class Interrupted(Exception):
    """A run stopped by Ctrl-C or SIGTERM after saving what it could; the message says what was kept."""


def require(module: str, extra: str):
    """Import an optional dependency, or say which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MarionetError(f"{module} is not installed ({e}); install the optional part: "
                            f"pip install 'marionet[{extra}]'") from None
