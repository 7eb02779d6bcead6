"""Exception tree of the device side: every error ``edge`` raises derives from :class:`EdgeError`."""

from __future__ import annotations

__all__ = [
    "EdgeError",
    "SpecError",
    "InputContractError",
    "AxisContractError",
    "ChannelCountError",
    "BundleError",
    "RuntimeLoadError",
    "ConfigError",
    "CommandError",
    "StaleCommandError",
    "OutboxError",
]


class EdgeError(Exception):
    """Base class of every error raised by ``edge``."""


class SpecError(EdgeError, ValueError):
    """A preprocessing spec is malformed, has an unknown op, or a newer ``spec_version`` than this code knows."""


class InputContractError(EdgeError, ValueError):
    """A spectrum does not match what a pipeline or model expects (channel count, wavelength range, NaN, ...)."""


class AxisContractError(InputContractError):
    """A device's wavelength axis does not fit the input contract (shape, NaN, range): a verdict on the axis, the
    same for every frame on it."""


class ChannelCountError(InputContractError):
    """Spectra have a channel count the pipeline or one of its steps cannot take."""


class BundleError(EdgeError, ValueError):
    """A model bundle is unreadable, tampered with, badly signed, or fails its self-test."""


class RuntimeLoadError(EdgeError, ImportError):
    """No TFLite runtime could be imported, or a model could not be loaded by it."""


class ConfigError(EdgeError, ValueError):
    """The daemon configuration is invalid; the message names the key and what was expected."""


class CommandError(EdgeError, ValueError):
    """A remote command is malformed, too large, unauthenticated or not allowed."""


class StaleCommandError(CommandError):
    """A remote command arrived more than ``commands.max_age_s`` after it was issued (queued during an outage)."""


class OutboxError(EdgeError, OSError):
    """The durable outbox cannot store or deliver messages (disk full, database unusable)."""
