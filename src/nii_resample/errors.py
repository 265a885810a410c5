"""Exceptions whose message is one sentence a user can act on."""


class VolumeError(Exception):
    """A single input volume cannot be resampled; the message names the file and the reason."""


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and the problem."""


class InputFolderError(FileNotFoundError):
    """The input folder is missing or holds no volumes."""


class RecordNotRebuilt(Exception):
    """A per-volume record deleted by hand cannot be rebuilt from its files (the output
    cannot be read back, or is not the resample of its input): one-line reason."""
