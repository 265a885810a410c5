"""Exceptions whose message is one sentence a user can act on, and that one-line reason."""


class VolumeError(Exception):
    """A single input volume cannot be resampled; the message names the file and the reason."""


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and the problem."""


class InputFolderError(FileNotFoundError):
    """The input folder is missing or holds no volumes."""


class RecordNotRebuilt(Exception):
    """A per-volume record deleted by hand cannot be rebuilt from its files (the output
    cannot be read back, or is not the resample of its input): one-line reason."""


def one_line(text) -> str:
    """`text` (an error, a message) on one line: every run of white space one space."""
    return " ".join(str(text).split())


def failure_reason(name: str, error: Exception) -> str:
    """The one-line reason a volume (file `name`) failed: a VolumeError's own message (it
    names the file), else the file, the exception's type and its message."""
    if isinstance(error, VolumeError):
        return one_line(error)
    return one_line(f"{name}: {type(error).__name__}: {error}")
