"""Audio I/O: decode any common format, resample, normalise loudness, two-channel FLAC bytes."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
from pipelines.core.stage import InputError

SF_FORMATS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif"}
AUDIO_EXTENSIONS = SF_FORMATS | {".mp3", ".m4a", ".aac", ".mp4", ".webm", ".wma"}
# FFmpeg demuxers tandem lets decode an input (FFmpeg detects formats by content, whatever the
# extension: without this list a text file named .wav is read as an HLS playlist or a concat list
# and FFmpeg opens the files it names). Audio containers only; nothing that refers to other files.
FFMPEG_FORMATS = ("wav", "flac", "ogg", "mp3", "mov", "aac", "matroska", "asf", "aiff", "w64", "caf", "au")
# audio codecs accepted inside those containers (name prefixes, as ffprobe names them)
FFMPEG_CODECS = ("pcm_", "flac", "mp3", "mp2", "aac", "opus", "vorbis", "alac", "wmav", "adpcm_")
# plain local files only (no network, no concat:/subfile:/pipe: protocols), the listed demuxers only
FFMPEG_CONFINE = ("-protocol_whitelist", "file", "-format_whitelist", ",".join(FFMPEG_FORMATS))
_REFUSED = re.compile(r"\[([\w,]+) @ 0x[0-9a-f]+\] Format not on whitelist")


class AudioError(InputError):
    """Bad input audio; the message names the file and the reason (`reason`: the rejection's code)."""

    def __init__(self, message: str, reason: str = "decode_error"):
        super().__init__(message, reason)


def _ff_input(p: Path) -> str:
    # the file: prefix keeps a name such as "concat:a|b" or "http:x" a plain path
    return f"file:{p}"


def probe(path: str | Path) -> dict:
    """Sample rate, channels, frames, format, without decoding (soundfile first, ffprobe after).

    libsndfile reads audio formats only; what it refuses is probed by ffprobe confined to plain
    files and the demuxers of FFMPEG_FORMATS: anything else (a playlist, a concat list, a video
    or image demuxer) is an AudioError with reason `unsupported_format` naming the detected format."""
    p = Path(path)
    try:
        info = sf.info(str(p))
        return {"sample_rate": info.samplerate, "channels": info.channels, "frames": info.frames,
                "format": info.format.lower(), "duration_s": info.frames / max(info.samplerate, 1)}
    except Exception as e:  # noqa: BLE001 - any soundfile failure means: try ffprobe
        sf_err = e
    if shutil.which("ffprobe") is None:
        raise AudioError(f"{p}: cannot decode with soundfile ({sf_err}) and ffprobe is not installed")
    r = subprocess.run(
        ["ffprobe", "-v", "error", *FFMPEG_CONFINE, "-select_streams", "a:0", "-show_entries",
         "stream=codec_name,codec_type,sample_rate,channels,duration:format=format_name,duration",
         "-of", "json", _ff_input(p)],
        capture_output=True, text=True, check=False)
    refused = _REFUSED.search(r.stderr or "")
    if refused:
        raise AudioError(f"{p}: detected format {refused.group(1)!r} is not an audio container tandem decodes "
                         f"(accepted: {', '.join(FFMPEG_FORMATS)})", reason="unsupported_format")
    try:
        meta = json.loads(r.stdout or "{}")
        st = meta["streams"][0]
        fmt = meta.get("format", {}).get("format_name", p.suffix.lstrip("."))
        codec = str(st.get("codec_name") or "")
        if not codec.startswith(FFMPEG_CODECS):
            raise AudioError(f"{p}: audio codec {codec or 'unknown'!r} in format {fmt!r} is not one tandem "
                             f"decodes (accepted: {', '.join(FFMPEG_CODECS)})", reason="unsupported_format")
        dur = float(st.get("duration") or meta.get("format", {}).get("duration") or 0.0)
        sr = int(st["sample_rate"])
        return {"sample_rate": sr, "channels": int(st["channels"]), "frames": int(dur * sr),
                "format": fmt, "duration_s": dur, "codec": codec}
    except (KeyError, IndexError, ValueError) as e:
        if isinstance(e, AudioError):
            raise
        msg = (r.stderr or "").strip().splitlines()
        raise AudioError(f"{p}: not a decodable audio file ({msg[-1] if msg else 'no audio stream'})") from None


def iter_blocks(path: str | Path, sample_rate: int, block_s: float = 30.0, channels: int | None = None):
    """Yield float32 [frames, channels] blocks resampled to `sample_rate`, never the whole file.

    soundfile streams wav/flac/ogg/opus; anything else is piped through ffmpeg (confined like
    `probe`) as raw float PCM. A failure mid-stream is an AudioError naming the file."""
    p = Path(path)
    info = probe(p)
    ch = channels or info["channels"]
    try:
        f = sf.SoundFile(str(p))
    except Exception:  # noqa: BLE001 - not a soundfile format: stream through ffmpeg
        f = None
    if f is not None:
        with f:
            import soxr
            rs = soxr.ResampleStream(f.samplerate, sample_rate, f.channels, dtype="float32") \
                if f.samplerate != sample_rate else None
            n = max(1, int(block_s * f.samplerate))
            done = 0
            while True:
                try:
                    x = f.read(n, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as e:  # a truncated or corrupt stream
                    raise AudioError(f"{p}: cannot decode: {e}") from None
                _check_finite(x, p, done, f.samplerate)  # before resampling, which spreads them
                done += len(x)
                last = len(x) < n
                if rs is not None:
                    x = rs.resample_chunk(x, last=last)
                if len(x):
                    yield _mix_to(x, ch)
                if last:
                    return
    if shutil.which("ffmpeg") is None:
        raise AudioError(f"{p}: format needs ffmpeg, which is not installed (apt-get install ffmpeg)")
    cmd = ["ffmpeg", "-v", "error", "-nostdin", *FFMPEG_CONFINE, "-i", _ff_input(p), "-map", "0:a:0",
           "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(ch), "-ar", str(sample_rate), "pipe:1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    nbytes = int(block_s * sample_rate) * ch * 4
    done = 0
    try:
        while True:
            buf = proc.stdout.read(nbytes)
            if not buf:
                break
            x = np.frombuffer(buf[: len(buf) - len(buf) % (4 * ch)], dtype=np.float32).reshape(-1, ch)
            _check_finite(x, p, done, sample_rate)
            done += len(x)
            yield x
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        rc = proc.wait()
    if rc != 0:
        raise AudioError(f"{p}: ffmpeg failed to decode: {err.splitlines()[-1] if err else rc}")


def _check_finite(x: np.ndarray, p: Path, start: int, sr: int) -> None:
    """NaN or infinite samples are their own reason: max(), hashes and loudness misread them."""
    ok = np.isfinite(x)
    if not ok.all():
        first = int(np.argwhere(~ok)[0][0])
        raise AudioError(f"{p}: {int((~ok).sum())} NaN or infinite sample(s), the first at "
                         f"{(start + first) / sr:.3f} s", reason="invalid_samples")


def _mix_to(x: np.ndarray, ch: int) -> np.ndarray:
    if x.shape[1] == ch:
        return x
    if ch == 1:
        return x.mean(axis=1, keepdims=True)
    if x.shape[1] == 1:
        return np.repeat(x, ch, axis=1)
    return x[:, :ch]


def load(path: str | Path, sample_rate: int, channels: int | None = None) -> np.ndarray:
    """Whole file as float32 [frames, channels]; for short files only (tests, examples)."""
    blocks = list(iter_blocks(path, sample_rate, channels=channels))
    if not blocks:
        return np.zeros((0, channels or 1), dtype=np.float32)
    return np.concatenate(blocks, axis=0)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    import soxr
    return soxr.resample(x, sr_in, sr_out).astype(np.float32, copy=False)


def encode_flac(audio: np.ndarray, sample_rate: int, level: int | None = None) -> bytes:
    """[channels, T] or [T, channels] float in [-1, 1] to 16-bit FLAC bytes (channels-last on disk).
    `level`: FLAC compression level 0-8 (None: libsndfile's default, 5)."""
    if level is not None and not 0 <= int(level) <= 8:
        raise ValueError(f"FLAC compression level must be 0-8, got {level}")
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[:, None]
    elif a.shape[0] <= 8 and a.shape[0] < a.shape[1]:
        a = a.T
    # libsndfile's own float -> 16-bit rule (x 32768, rounded to nearest even, clipped) done here in
    # numpy: the same bytes, and libsndfile's per-sample conversion was a sixth of the encode time
    pcm = np.clip(np.rint(np.clip(a, -1.0, 1.0) * a.dtype.type(32768.0)), -32768, 32767).astype(np.int16) \
        if a.dtype.kind == "f" else a
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, format="FLAC", subtype="PCM_16",
             compression_level=None if level is None else int(level) / 8)  # libsndfile: level / 8
    return buf.getvalue()


def decode_flac(data: bytes) -> tuple[np.ndarray, int]:
    """FLAC bytes to float32 [channels, T] and the sample rate."""
    x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return np.ascontiguousarray(x.T), sr


def pcm_hash(blocks_or_array) -> str:
    """Content hash of decoded audio: 16-bit PCM after resampling, so the same recording under
    two names (or two containers) hashes the same."""
    h = hashlib.sha256()
    arrays = [blocks_or_array] if isinstance(blocks_or_array, np.ndarray) else blocks_or_array
    for b in arrays:
        h.update((np.clip(b, -1, 1) * 32767).astype("<i2").tobytes())
    return h.hexdigest()[:32]


def loudness_gain(audio: np.ndarray, sample_rate: int, target_lufs: float) -> float:
    """Linear gain that brings integrated loudness (BS.1770) to target; 1.0 for silence."""
    import pyloudnorm
    a = audio if audio.ndim == 2 else audio[:, None]
    if len(a) < int(0.4 * sample_rate):
        return 1.0
    lufs = pyloudnorm.Meter(sample_rate).integrated_loudness(a)
    if not np.isfinite(lufs):
        return 1.0
    return float(10 ** ((target_lufs - lufs) / 20))
