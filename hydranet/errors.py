"""Exceptions raised by Hydranet, so callers can catch them by kind."""


class HydranetError(Exception):
    """Base class of the errors Hydranet raises on bad input."""


class ConfigError(HydranetError, ValueError):
    """A config is invalid; the message names the field (e.g. ``tasks[0].classes``)."""


class DataError(HydranetError, ValueError):
    """A data file is missing, unreadable or inconsistent; the message names the file."""


class OutputError(DataError):
    """A file or folder cannot be written (read-only, missing parent, full disk); the message names the path."""


class CheckpointError(HydranetError, ValueError):
    """A checkpoint cannot be loaded; the message names the file and the problem."""


class WeightsUnavailableError(HydranetError, RuntimeError):
    """Pretrained weights cannot be obtained (e.g. offline); the message says how to supply them."""
