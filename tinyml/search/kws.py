"""Keyword spotting offline: the ten Speech Commands words synthesized with espeak-ng, shaped with sox.

Clips: 7 English voices x 5 voice variants x 3 speeds x 2 pitches per word (210 per word), resampled
to 16 kHz mono and padded/trimmed to one second by sox, then three copies each with a random time
shift and background noise. Features: a 32 x 32 log-mel spectrogram (40 ms windows, 31.25 ms hop,
32 mel bands up to 8 kHz), computed here in numpy. The dataset is built once and cached under
~/.cache/tinyml (keyed by this recipe's version); nothing is downloaded.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from tinyml.errors import TinymlError

WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
VARIANTS = ["", "+f2", "+m3", "+f4", "+m7"]
SPEEDS = [120, 160, 200]
PITCHES = [35, 65]
RATE, SIZE, COPIES = 16000, 32, 3


def keyword_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Log-mel images [N, 32, 32, 1] in [0, 1] and word labels (index into WORDS), built once and cached."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tinyml" / f"kws-{recipe_digest()}.npz"
    if not cache.exists():
        x, y = _synthesize(seed=1234)
        cache.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez_compressed(buf, x=x, y=y)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(cache)
    with np.load(cache) as z:
        return z["x"], z["y"]


def _synthesize(seed: int) -> tuple[np.ndarray, np.ndarray]:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise TinymlError(f"task kws needs {tool}: apt-get install espeak-ng sox")
    rng = np.random.default_rng(seed)
    mel = mel_filters()
    xs, ys = [], []
    with tempfile.TemporaryDirectory(prefix="tinyml-kws-") as tmp:
        raw, clip = Path(tmp) / "raw.wav", Path(tmp) / "clip.wav"
        for label, word in enumerate(WORDS):
            for voice in VOICES:
                for variant in VARIANTS:
                    for speed in SPEEDS:
                        for pitch in PITCHES:
                            _run(["espeak-ng", "-v", voice + variant, "-s", str(speed), "-p", str(pitch),
                                  "-w", str(raw), word])
                            _run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(clip),
                                  "pad", "0", "1", "trim", "0", "1"])
                            audio = _read_wav(clip)
                            for _ in range(COPIES):
                                xs.append(log_mel(_augment(audio, rng), mel))
                                ys.append(label)
    x = np.stack(xs).astype(np.float32)
    x = (x - x.min()) / (x.max() - x.min())
    return x[..., None], np.array(ys, np.int64)


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, timeout=60)
    if r.returncode:
        raise TinymlError(f"{cmd[0]} failed: {r.stderr.decode(errors='replace').strip().splitlines()[:1]}")


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        a = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    out = np.zeros(RATE, np.float32)
    out[: min(RATE, len(a))] = a[:RATE]
    return out


def _augment(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random shift of up to 100 ms and white noise 20-40 dB below the clip."""
    a = np.roll(a, int(rng.integers(-1600, 1601)))
    power = float(np.mean(a ** 2)) + 1e-9
    return a + rng.standard_normal(len(a)).astype(np.float32) * np.sqrt(power / 10 ** (rng.uniform(20, 40) / 10))


def mel_filters(n_fft: int = 640, bands: int = SIZE, fmax: float = RATE / 2) -> np.ndarray:
    """Triangular filters on the mel scale, [bands, n_fft // 2 + 1]."""
    to_mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    to_hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = to_hz(np.linspace(to_mel(20.0), to_mel(fmax), bands + 2))
    freqs = np.linspace(0, RATE / 2, n_fft // 2 + 1)
    fb = np.zeros((bands, len(freqs)), np.float32)
    for b in range(bands):
        lo, mid, hi = edges[b:b + 3]
        fb[b] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return fb


def log_mel(a: np.ndarray, fb: np.ndarray, n_fft: int = 640) -> np.ndarray:
    """[SIZE frames, SIZE bands] log-mel energies of one second."""
    hop = RATE // SIZE
    padded = np.pad(a, (0, n_fft))
    frames = np.stack([padded[i * hop:i * hop + n_fft] for i in range(SIZE)]) * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return np.log(power @ fb.T + 1e-6)


def recipe_digest() -> str:
    """Names the cache: a change of words, voices or features builds a new dataset."""
    return hashlib.sha256(repr((WORDS, VOICES, VARIANTS, SPEEDS, PITCHES, RATE, SIZE, COPIES)).encode()).hexdigest()[:12]
