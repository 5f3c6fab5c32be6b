"""Sound as pictures: an audio clip drawn as a log-mel spectrogram.

:class:`AudioInput` decodes a clip with ``soundfile`` (libsndfile: WAV, FLAC,
OGG/Vorbis, AIFF), mixes it to mono, resamples it, cuts or pads it to a fixed
length and draws its log-mel spectrogram as an 8-bit picture: ``n_mels`` rows
high (low frequencies at the bottom), one column per hop. From there the clip is
an image like any other, so training, interpretation, export and the server
work unchanged.

Everything here is numpy (the STFT, the mel filterbank, the resampler), so the
torch-free server draws exactly the spectrogram training drew. ``soundfile`` is
the optional ``ursa[audio]`` dependency, imported only when a clip is opened.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ursa.core.errors import ConfigError, ImageError
from ursa.core.imageio import MAX_PIXELS, ImageSource, describe_source
from ursa.core.sources import InputSource, source_settings

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif"})

#: A clip whose loudest sample is below this (about -100 dBFS, under the smallest
#: 16-bit step) is taken as silence: its spectrogram would be noise-free black.
SILENCE = 1e-5


#: Longest clip ``max_seconds`` may allow.
MAX_CLIP_SECONDS = 3600.0
#: Largest spectrogram picture the settings may ask for (a 4,096-pixel square).
MAX_PICTURE_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class AudioInput(InputSource):
    """Audio clips drawn as log-mel spectrograms (``n_mels`` high, one column per hop)."""

    kind: ClassVar[str] = "audio"
    # A crop would drop frequencies and time; a flip plays the clip backwards.
    data_defaults: ClassVar[Mapping[str, str]] = {"resize": "squish", "augment": "none"}

    sample_rate: int = 16_000
    """Clips are resampled to this rate (Hz) before anything else."""
    duration: float = 1.0
    """Seconds drawn: a longer clip keeps its middle, a shorter one is padded with
    silence on both sides."""
    n_mels: int = 64
    """Mel bands: the picture's height."""
    n_fft: int = 512
    """STFT window length in samples (32 ms at 16 kHz)."""
    hop_length: int = 160
    """Samples between columns (10 ms at 16 kHz): the picture is
    ``1 + sample_rate * duration // hop_length`` columns wide."""
    f_min: float = 0.0
    """Lowest frequency drawn (Hz)."""
    f_max: float | None = None
    """Highest frequency drawn (Hz); None means half the sample rate."""
    top_db: float = 80.0
    """Dynamic range drawn: the loudest cell is white, anything ``top_db`` below it black."""
    max_seconds: float = 600.0
    """Clips longer than this are refused before they are decoded."""

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.sample_rate, int) or not 1_000 <= self.sample_rate <= 384_000:
            problems.append(f"sample_rate={self.sample_rate!r}: use a whole number of Hz, 1000+")
        if not (isinstance(self.duration, (int, float)) and 0.0 < self.duration <= 600.0):
            problems.append(f"duration={self.duration!r}: use seconds above 0, at most 600")
        if not isinstance(self.n_mels, int) or not 4 <= self.n_mels <= 512:
            problems.append(f"n_mels={self.n_mels!r}: use a whole number from 4 to 512")
        if not isinstance(self.n_fft, int) or not 16 <= self.n_fft <= 65_536:
            problems.append(f"n_fft={self.n_fft!r}: use a whole number of samples, 16 to 65536")
        if not isinstance(self.hop_length, int) or self.hop_length < 1:
            problems.append(f"hop_length={self.hop_length!r}: use a whole number of samples, 1+")
        nyquist = self.sample_rate / 2 if isinstance(self.sample_rate, int) else math.inf
        top = nyquist if self.f_max is None else self.f_max
        if not 0.0 <= self.f_min < top <= nyquist:
            problems.append(
                f"f_min={self.f_min!r}, f_max={self.f_max!r}: use 0 <= f_min < f_max <= "
                f"sample_rate / 2 ({nyquist:g} Hz)"
            )
        if not self.top_db > 0:
            problems.append(f"top_db={self.top_db!r}: use a positive number of decibels")
        if not MAX_CLIP_SECONDS >= self.max_seconds >= self.duration:
            problems.append(
                f"max_seconds={self.max_seconds!r}: use at least duration, at most "
                f"{MAX_CLIP_SECONDS:g}"
            )
        if not problems and self.frames * self.n_mels > MAX_PICTURE_PIXELS:
            # A bundle's settings are not trusted: hop 1 at 384 kHz for 600 s is a
            # 100-gigapixel picture.
            problems.append(
                f"hop_length={self.hop_length}: the picture would be {self.n_mels} × "
                f"{self.frames:,} pixels, more than {MAX_PICTURE_PIXELS:,}; raise hop_length"
            )
        if problems:
            raise ConfigError("invalid audio settings:\n  " + "\n  ".join(problems))
        empty = int(np.sum(self._filterbank.sum(axis=1) == 0))
        if empty:
            raise ConfigError(
                f"invalid audio settings: {empty} of the {self.n_mels} mel bands fall between "
                f"two FFT bins and would always be black; raise n_fft (now {self.n_fft}), "
                f"lower n_mels or raise f_min"
            )

    @property
    def extensions(self) -> frozenset[str]:
        return AUDIO_EXTENSIONS

    @property
    def samples(self) -> int:
        """Samples per clip after resampling, cutting and padding."""
        return round(self.sample_rate * self.duration)

    @property
    def frames(self) -> int:
        """Columns of the picture."""
        return 1 + self.samples // self.hop_length

    @cached_property
    def _filterbank(self) -> np.ndarray:
        return mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.f_min, self.f_max)

    def open(
        self, source: ImageSource, *, max_pixels: int = MAX_PIXELS, min_size: int | None = None
    ) -> Image.Image:
        """Decode a clip into its spectrogram picture (RGB, ``n_mels`` × :attr:`frames`).

        ``max_pixels`` and ``min_size`` are not used: the settings fix the picture's size.
        """
        samples = self.waveform(source)
        return Image.fromarray(self.spectrogram(samples)).convert("RGB")

    def waveform(self, source: ImageSource) -> np.ndarray:
        """The clip as :attr:`samples` float32 mono samples at :attr:`sample_rate`."""
        name, samples, rate = _decode(source, self.max_seconds)
        peak = float(np.max(np.abs(samples))) if samples.size else 0.0
        if not math.isfinite(peak):
            raise ImageError(name, "the clip holds NaN or infinite samples")
        if peak < SILENCE:
            raise ImageError(name, "the clip is silent (every sample is zero or nearly)")
        # Cut at the source rate first, so resampling costs the same for any clip length.
        wanted = round(rate * self.duration)
        samples = _centre(samples, wanted)
        return _centre(resample(samples, rate, self.sample_rate), self.samples)

    def spectrogram(self, samples: np.ndarray) -> np.ndarray:
        """(n_mels, frames) uint8: log-mel power scaled to 0–255, low frequencies last."""
        power = stft_power(samples, self.n_fft, self.hop_length)  # (frames, n_fft // 2 + 1)
        # einsum, not a BLAS matmul: no BLAS threads to contend with (a matmul this small
        # took 20 ms instead of 0.2 on a busy machine) and no dependence on the BLAS build
        # or thread count; the pixels are rounded to uint8 after, so last-bit differences
        # between CPUs' SIMD widths do not reach the picture in practice.
        mel = np.einsum("fk,mk->fm", power, self._filterbank)  # (frames, n_mels)
        decibels = 10.0 * np.log10(np.maximum(mel, 1e-10))
        top = float(decibels.max())
        scaled = (np.clip(decibels, top - self.top_db, top) - (top - self.top_db)) / self.top_db
        pixels = np.round(scaled * 255.0).astype(np.uint8)  # (frames, n_mels)
        return np.ascontiguousarray(pixels.T[::-1])  # rows: high → low frequency

    def require(self) -> None:
        _require_soundfile()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AudioInput:
        """Settings as :meth:`to_dict` writes them; missing ones take the defaults."""
        settings = source_settings(cls, values)
        try:
            return cls(**settings)
        except TypeError as error:  # e.g. a string where a number belongs
            raise ConfigError(f"invalid audio settings: {error}") from None


def _require_soundfile() -> None:
    try:
        import soundfile  # noqa: F401
    except ImportError:
        raise ConfigError(
            'this model reads audio, which needs the soundfile package: pip install "ursa[audio]"'
        ) from None


def _decode(source: ImageSource, max_seconds: float) -> tuple[str, np.ndarray, int]:
    """(name, mono float32 samples, sample rate); ImageError with the reason on failure."""
    name = describe_source(source)
    try:
        import soundfile
    except ImportError:
        raise ImageError(
            name, 'reading audio needs the soundfile package: pip install "ursa[audio]"'
        ) from None
    if isinstance(source, Image.Image):
        raise ImageError(name, "an audio model needs a sound file (WAV, FLAC, OGG), not a picture")
    stream: Any = source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(name, "no such file")
        stream = path
        if path.stat().st_size == 0:
            raise ImageError(name, "the file is empty (0 bytes)")
    elif isinstance(source, bytes):
        if not source:
            raise ImageError(name, "the file is empty (0 bytes)")
        stream = io.BytesIO(source)
    try:
        with soundfile.SoundFile(stream) as clip:
            rate, length = clip.samplerate, clip.frames
            if length <= 0:
                raise ImageError(name, "the clip holds no samples")
            if length > max_seconds * rate:
                raise ImageError(
                    name,
                    f"the clip is {length / rate:.1f} s long, over the limit of {max_seconds:g} s "
                    f"(max_seconds): cut it shorter",
                )
            data = clip.read(dtype="float32", always_2d=True)  # (samples, channels)
    except ImageError:
        raise
    except (RuntimeError, TypeError, ValueError, OSError) as error:
        # libsndfile's reasons read like "Format not recognised."; keep them.
        detail = str(error).split(": ", 1)[-1].strip() or type(error).__name__
        raise ImageError(
            name, f"not a readable audio file (WAV, FLAC, OGG, AIFF): {detail}"
        ) from None
    if data.shape[0] == 0:
        raise ImageError(name, "the clip holds no samples (truncated?)")
    return name, data.mean(axis=1, dtype=np.float32), int(rate)


def _centre(samples: np.ndarray, length: int) -> np.ndarray:
    """The middle ``length`` samples, or the clip padded with zeros on both sides."""
    extra = samples.shape[0] - length
    if extra >= 0:
        return samples[extra // 2 : extra // 2 + length]
    before = -extra // 2
    return np.pad(samples, (before, -extra - before))


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling by the Fourier method: the spectrum is cut (or zero
    extended) at the new Nyquist frequency. Exact for a periodic signal; at the
    clip's two ends it rings a little, which a spectrogram does not show."""
    if rate == target or samples.shape[0] == 0:
        return samples.astype(np.float32, copy=False)
    length = samples.shape[0]
    new_length = max(1, round(length * target / rate))
    spectrum = np.fft.rfft(samples.astype(np.float64))
    kept = np.zeros(new_length // 2 + 1, dtype=np.complex128)
    n = min(kept.shape[0], spectrum.shape[0])
    kept[:n] = spectrum[:n]
    return (np.fft.irfft(kept, n=new_length) * (new_length / length)).astype(np.float32)


def stft_power(samples: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """(frames, n_fft // 2 + 1) power spectrogram: periodic Hann windows, centred frames
    (the clip is padded by half a window of zeros at each end)."""
    padded = np.pad(samples.astype(np.float64), (n_fft // 2, n_fft // 2))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    spectrum = np.fft.rfft(frames * window, axis=1)
    return spectrum.real**2 + spectrum.imag**2


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """The HTK mel scale: 2595 · log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, evenly spaced on the mel scale,
    each peaking at 1 at its centre frequency."""
    top = sample_rate / 2 if f_max is None else f_max
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(top), n_mels + 2))  # (n_mels + 2,)
    bins = np.arange(n_fft // 2 + 1) * sample_rate / n_fft  # (n_fft // 2 + 1,) bin frequencies
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - low) / (centre - low)
    falling = (high - bins[None, :]) / (high - centre)
    return np.maximum(0.0, np.minimum(rising, falling))
