"""Dark and white references of the daemon: where they come from, whether they still hold, and their files.

A spectrum in detector counts becomes absorbance only against a dark (light path blocked) and a white reference
(100 % transmittance or reflectance).  The daemon gets them from DARK/REFERENCE frames the device sends (on its own
or when asked by a command), or from ``.npy``/``.npz``/``.csv`` files named in the configuration, and keeps the
last captured pair in its state directory so that a restart does not wait for the next capture.

Everything here is values in, values out, except the two small file functions (:func:`load_reference_file`,
:func:`save_reference_file`); the clock is passed in (``now_s``) so the staleness rules are testable.

>>> import numpy as np
>>> refs = ReferenceSet().with_spectrum(ReferenceSpectrum.from_counts(
...     ReferenceKind.DARK, np.full(4, 100.0), captured_at_s=0.0, integration_time_us=5000))
>>> refs.check(pixel_count=4, integration_time_us=5000, now_s=1.0, policy=ReferencePolicy()).quality.value
'missing'
"""

from __future__ import annotations

import enum
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import numpy.typing as npt

from edge.errors import EdgeError
from firmware_bridge.frames import Dark, Reference

__all__ = [
    "ReferenceSpectrumError",
    "ReferenceKind",
    "ReferenceSource",
    "ReferenceQuality",
    "ReferenceSpectrum",
    "ReferencePolicy",
    "ReferenceCheck",
    "ReferenceSet",
    "load_reference_file",
    "save_reference_file",
]


class ReferenceSpectrumError(EdgeError, ValueError):
    """A dark or white reference cannot be used: unreadable file, wrong shape, non-finite values."""


def __getattr__(name: str) -> type[ReferenceSpectrumError]:
    # ``ReferenceError``, the old name of ReferenceSpectrumError, shadowed the builtin; it stays importable (without
    # being bound in this module) for code outside this repository; nothing here uses it. New code uses
    # ReferenceSpectrumError.
    if name == "ReferenceError":
        return ReferenceSpectrumError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ReferenceKind(str, enum.Enum):
    """Which reference: the dark or the white one; the value is used in messages and file names."""

    DARK = "dark"
    WHITE = "reference"


class ReferenceSource(str, enum.Enum):
    """Where a reference came from."""

    FRAME = "frame"  #: sent by the device on its own
    COMMAND = "command"  #: captured because a command asked the device for it
    FILE = "file"  #: loaded from a file named in the configuration
    STATE = "state"  #: restored from the daemon's state directory after a restart


class ReferenceQuality(str, enum.Enum):
    """Verdict on the references for one spectrum."""

    OK = "ok"
    STALE = "stale"  #: usable, but too old, taken at another integration time, or physically suspicious
    MISSING = "missing"  #: absent or not matching the spectrum's pixel count: cannot be used at all


@dataclass(frozen=True, eq=False)
class ReferenceSpectrum:
    """One dark or white reference.

    Parameters
    ----------
    kind : ReferenceKind
        Dark or white.
    counts : ndarray, shape (n_pixels,), float64
        Detector values, read-only.
    captured_at_s : float
        Host wall-clock time of the capture, seconds since the epoch (what staleness is measured against).
    integration_time_us : int or None
        Exposure time of the reference, microseconds; ``None`` when unknown (from a bare file).
    source : ReferenceSource
        Where it came from.
    seq : int or None
        Sequence number of the frame it came in.
    timestamp_us : int or None
        Device clock at the capture, microseconds.
    """

    kind: ReferenceKind
    counts: npt.NDArray[np.float64]
    captured_at_s: float
    integration_time_us: int | None = None
    source: ReferenceSource = ReferenceSource.FRAME
    seq: int | None = None
    timestamp_us: int | None = None

    def __post_init__(self) -> None:
        counts = np.array(self.counts, dtype=np.float64, copy=True)
        if counts.ndim != 1 or counts.size == 0:
            raise ReferenceSpectrumError(f"expected a non-empty one-dimensional {self.kind.value} spectrum, "
                                         f"got shape {counts.shape}")
        if not np.all(np.isfinite(counts)):
            raise ReferenceSpectrumError(f"expected finite {self.kind.value} counts, got "
                                         f"{int(np.sum(~np.isfinite(counts)))} non-finite values")
        counts.flags.writeable = False
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "kind", ReferenceKind(self.kind))
        object.__setattr__(self, "source", ReferenceSource(self.source))

    @property
    def pixel_count(self) -> int:
        """Number of pixels."""
        return int(self.counts.shape[0])

    @classmethod
    def from_counts(
        cls,
        kind: ReferenceKind,
        counts: npt.ArrayLike,
        *,
        captured_at_s: float,
        integration_time_us: int | None = None,
        source: ReferenceSource = ReferenceSource.FILE,
    ) -> "ReferenceSpectrum":
        """Build a reference from a bare array (shape (n_pixels,))."""
        return cls(kind, np.asarray(counts, dtype=np.float64), captured_at_s, integration_time_us, source)

    @classmethod
    def from_frame(
        cls, frame: Union[Dark, Reference], *, captured_at_s: float, source: ReferenceSource = ReferenceSource.FRAME
    ) -> "ReferenceSpectrum":
        """Build a reference from a DARK or REFERENCE frame of the serial protocol."""
        kind = ReferenceKind.DARK if isinstance(frame, Dark) else ReferenceKind.WHITE
        if not isinstance(frame, (Dark, Reference)):
            raise ReferenceSpectrumError(f"expected a Dark or Reference frame, got {type(frame).__name__}")
        return cls(
            kind,
            np.asarray(frame.counts, dtype=np.float64),
            captured_at_s,
            int(frame.integration_time_us),
            source,
            int(frame.seq),
            int(frame.timestamp_us),
        )

    def describe(self, now_s: float) -> dict[str, object]:
        """JSON-ready summary (no counts): kind, source, age, integration time, mean level."""
        return {
            "kind": self.kind.value,
            "source": self.source.value,
            "age_s": round(max(0.0, now_s - self.captured_at_s), 3),
            "integration_time_us": self.integration_time_us,
            "seq": self.seq,
            "mean_counts": float(np.mean(self.counts)),
            "pixel_count": self.pixel_count,
        }


@dataclass(frozen=True)
class ReferencePolicy:
    """When references count as missing or stale.

    Parameters
    ----------
    max_age_s : float or None
        A reference older than this is stale; ``None`` never ages.
    require_dark, require_reference : bool
        Whether the pipeline needs them at all (a model on absorbance sent by the device needs neither).
    match_integration_time : bool
        A reference taken at another integration time than the spectrum is stale.
    min_dark_margin : float
        Fraction of pixels on which the white reference must exceed the dark; below it the pair is stale
        ("dark above the reference").
    """

    max_age_s: float | None = 3600.0
    require_dark: bool = True
    require_reference: bool = True
    match_integration_time: bool = True
    min_dark_margin: float = 0.99


@dataclass(frozen=True)
class ReferenceCheck:
    """Verdict for one spectrum: overall quality and the reasons (empty when OK)."""

    quality: ReferenceQuality
    reasons: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        """Whether a prediction can be computed (OK or stale)."""
        return self.quality is not ReferenceQuality.MISSING


@dataclass(frozen=True)
class ReferenceSet:
    """The current dark and white reference (either may be ``None``); replace one to get a new set."""

    dark: ReferenceSpectrum | None = None
    reference: ReferenceSpectrum | None = None
    #: Fraction of pixels on which the white reference exceeds the dark (1.0 when either is absent).
    white_above_dark_fraction: float = field(init=False, compare=False)

    def __post_init__(self) -> None:
        fraction = 1.0
        if self.dark is not None and self.reference is not None and self.dark.pixel_count == self.reference.pixel_count:
            fraction = float(np.mean(self.reference.counts > self.dark.counts))
        object.__setattr__(self, "white_above_dark_fraction", fraction)

    def with_spectrum(self, spectrum: ReferenceSpectrum) -> "ReferenceSet":
        """A new set with ``spectrum`` in the slot of its kind."""
        if spectrum.kind is ReferenceKind.DARK:
            return ReferenceSet(dark=spectrum, reference=self.reference)
        return ReferenceSet(dark=self.dark, reference=spectrum)

    def context(self) -> dict[str, npt.NDArray[np.float64] | None]:
        """Keyword context for ``Pipeline.transform``: ``{"dark": ..., "reference": ...}`` (arrays or ``None``)."""
        return {
            "dark": None if self.dark is None else self.dark.counts,
            "reference": None if self.reference is None else self.reference.counts,
        }

    def check(
        self, *, pixel_count: int, integration_time_us: int | None, now_s: float, policy: ReferencePolicy
    ) -> ReferenceCheck:
        """Judge the references for a spectrum of ``pixel_count`` pixels taken at ``integration_time_us``.

        Parameters
        ----------
        pixel_count : int
            Pixels of the spectrum.
        integration_time_us : int or None
            Its exposure time, microseconds.
        now_s : float
            Current host time, seconds since the epoch.
        policy : ReferencePolicy
            The rules.

        Returns
        -------
        ReferenceCheck
            ``MISSING`` when a required reference is absent or has another pixel count; ``STALE`` when one is too
            old, was taken at another integration time, or the dark is not below the white reference; else ``OK``.
        """
        missing: list[str] = []
        stale: list[str] = []
        wanted = []
        if policy.require_dark:
            wanted.append((ReferenceKind.DARK, self.dark))
        if policy.require_reference:
            wanted.append((ReferenceKind.WHITE, self.reference))
        for kind, ref in wanted:
            if ref is None:
                missing.append(f"no {kind.value} spectrum yet")
                continue
            if ref.pixel_count != pixel_count:
                missing.append(f"expected a {kind.value} of {pixel_count} pixels, got {ref.pixel_count}")
                continue
            age = now_s - ref.captured_at_s
            if policy.max_age_s is not None and age > policy.max_age_s:
                stale.append(f"{kind.value} is {age:.0f} s old (max {policy.max_age_s:g} s)")
            if (
                policy.match_integration_time
                and integration_time_us is not None
                and ref.integration_time_us is not None
                and ref.integration_time_us != integration_time_us
            ):
                stale.append(
                    f"{kind.value} taken at {ref.integration_time_us} us, spectrum at {integration_time_us} us"
                )
        if missing:
            return ReferenceCheck(ReferenceQuality.MISSING, tuple(missing + stale))
        if policy.require_dark and policy.require_reference:
            below = self.white_above_dark_fraction
            if below < policy.min_dark_margin:
                stale.append(f"white reference above the dark on only {100.0 * below:.1f} % of pixels")
        if stale:
            return ReferenceCheck(ReferenceQuality.STALE, tuple(stale))
        return ReferenceCheck(ReferenceQuality.OK)

    def describe(self, now_s: float) -> dict[str, object]:
        """JSON-ready summary of both references for status and command responses."""
        return {
            "dark": None if self.dark is None else self.dark.describe(now_s),
            "reference": None if self.reference is None else self.reference.describe(now_s),
        }


def load_reference_file(
    path: str | os.PathLike[str], kind: ReferenceKind, *, captured_at_s: float | None = None
) -> ReferenceSpectrum:
    """Load a dark or white reference from ``.npy``, ``.npz`` or ``.csv``/``.txt``.

    Parameters
    ----------
    path : path-like
        ``.npy``: a 1-D array of counts.  ``.npz``: array ``counts`` (or the only array), optional scalars
        ``integration_time_us`` and ``captured_at_s`` (as written by :func:`save_reference_file`).
        ``.csv``/``.txt``: one column of counts, or two (wavelength, counts); ``#`` comments allowed.
    kind : ReferenceKind
        Dark or white.
    captured_at_s : float, optional
        Capture time to record; default the file's modification time (or the value stored in an ``.npz``).

    Raises
    ------
    ReferenceSpectrumError
        Unreadable file, unknown suffix, wrong shape or non-finite values.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    integration: int | None = None
    source = ReferenceSource.FILE
    try:
        when = float(captured_at_s) if captured_at_s is not None else p.stat().st_mtime
        if suffix == ".npy":
            counts = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as data:
                names = list(data.files)
                if "counts" in data:
                    counts = data["counts"]
                elif len(names) == 1:
                    counts = data[names[0]]
                else:
                    raise ReferenceSpectrumError(f"expected an array 'counts' in {p.name}, got {names}")
                if "integration_time_us" in data:
                    value = int(data["integration_time_us"])
                    integration = value if value > 0 else None
                if captured_at_s is None and "captured_at_s" in data:
                    when = float(data["captured_at_s"])
                if "source" in data and str(data["source"]) != ReferenceSource.FILE.value:
                    source = ReferenceSource.STATE
        elif suffix in (".csv", ".txt"):
            text = p.read_text(encoding="utf-8")
            delimiter = "," if suffix == ".csv" else None
            table = np.loadtxt(io.StringIO(text), delimiter=delimiter, ndmin=2, comments="#")
            if table.shape[1] not in (1, 2):
                raise ReferenceSpectrumError(f"expected 1 or 2 columns in {p.name}, got {table.shape[1]}")
            counts = table[:, -1]
        else:
            raise ReferenceSpectrumError(f"expected a .npy, .npz, .csv or .txt reference file, got {p.name}")
    except ReferenceSpectrumError:
        raise
    except (OSError, ValueError) as exc:
        raise ReferenceSpectrumError(f"cannot read {kind.value} file {p}: {exc}") from exc
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim == 2 and 1 in counts.shape:
        counts = counts.reshape(-1)
    return ReferenceSpectrum(kind, counts, when, integration, source)


def save_reference_file(path: str | os.PathLike[str], spectrum: ReferenceSpectrum) -> Path:
    """Write ``spectrum`` to an ``.npz`` atomically (temporary file, fsync, rename); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                counts=spectrum.counts,
                integration_time_us=np.int64(spectrum.integration_time_us or 0),
                captured_at_s=np.float64(spectrum.captured_at_s),
                source=np.str_(spectrum.source.value),
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p
