import logging
import struct

import numpy as np
import pytest
import soundfile as sf

from after.data.audio import (
    AUDIO_EXTENSIONS,
    audio_info,
    is_silent,
    load_audio,
    resample,
    rms_db,
    save_audio,
)
from after.errors import AudioFileError, BadInputError

RATE = 22050


def sine(freq: float, seconds: float, rate: int = RATE, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    """Frequency of the largest FFT bin, refined by parabolic interpolation."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + offset) * rate / len(x)


@pytest.mark.parametrize(("from_rate", "to_rate"), [(44100, 22050), (22050, 48000), (48000, 16000)])
def test_resample_keeps_frequency_and_duration(from_rate, to_rate):
    x = sine(441.0, 1.0, from_rate)
    y = resample(x, from_rate, to_rate)
    assert y.dtype == np.float32
    assert abs(len(y) - to_rate) <= 1  # duration kept: 1 s
    assert dominant_frequency(y, to_rate) == pytest.approx(441.0, abs=0.5)
    # [C, T] input keeps its layout and resamples each channel the same way
    stereo = resample(np.stack([x, -x]), from_rate, to_rate)
    assert stereo.shape == (2, len(y))
    np.testing.assert_allclose(stereo[0], y, atol=1e-6)
    np.testing.assert_allclose(stereo[1], -y, atol=1e-6)


def test_resample_same_rate_is_identity():
    x = sine(100.0, 0.1)
    assert resample(x, RATE, RATE) is x


# container -> (save rate, max abs error after round trip, whether the codec is lossless)
FORMATS = {
    ".wav": (RATE, 1e-4, True),
    ".flac": (RATE, 1e-4, True),
    ".aiff": (RATE, 1e-4, True),
    ".ogg": (RATE, None, False),
    ".mp3": (RATE, None, False),
    ".opus": (48000, None, False),
}


@pytest.mark.parametrize("extension", sorted(FORMATS))
def test_format_round_trip(tmp_path, extension):
    rate, tolerance, lossless = FORMATS[extension]
    assert extension in AUDIO_EXTENSIONS
    x = sine(440.0, 1.0, rate)
    path = tmp_path / f"tone{extension}"
    save_audio(path, x, rate)
    y, loaded_rate = load_audio(path)
    assert loaded_rate == rate
    assert y.dtype == np.float32 and y.ndim == 2 and y.shape[0] == 1
    info = audio_info(path)
    assert info.sample_rate == rate and info.channels == 1
    if lossless:
        assert y.shape[1] == len(x) and info.frames == len(x)
        np.testing.assert_allclose(y[0], x, atol=tolerance)
    else:
        # lossy codecs may pad or delay by a few ms; pitch and level must survive
        assert abs(y.shape[1] - len(x)) < 0.06 * rate
        assert dominant_frequency(y[0], rate) == pytest.approx(440.0, abs=2.0)
        assert rms_db(y) == pytest.approx(rms_db(x), abs=1.5)


def test_load_resamples_to_requested_rate(tmp_path):
    path = tmp_path / "tone.flac"
    save_audio(path, sine(440.0, 1.0, 44100), 44100, subtype="PCM_24")
    y, rate = load_audio(path, sample_rate=RATE)
    assert rate == RATE and abs(y.shape[1] - RATE) <= 1
    assert dominant_frequency(y[0], RATE) == pytest.approx(440.0, abs=0.5)


def test_stereo_to_mono_is_channel_mean(tmp_path):
    left, right = sine(440.0, 0.5), sine(660.0, 0.5, amplitude=0.25)
    path = tmp_path / "stereo.wav"
    save_audio(path, np.stack([left, right]), RATE, subtype="FLOAT")
    both, _ = load_audio(path, mono=False)
    assert both.shape == (2, len(left))
    np.testing.assert_array_equal(both[0], left)
    mono, _ = load_audio(path)
    assert mono.shape == (1, len(left))
    np.testing.assert_allclose(mono[0], (left + right) / 2, atol=1e-7)
    assert audio_info(path).channels == 2


def write_nan_wav(path):
    x = sine(440.0, 0.1)
    x[10] = np.nan
    sf.write(str(path), x, RATE, subtype="FLOAT")


def write_text_as_wav(path):
    path.write_text("this is a text file, not audio\n" * 10)


def write_corrupt_header(path):
    sf.write(str(path), sine(440.0, 0.1), RATE)
    data = bytearray(path.read_bytes())
    data[12:40] = b"\xff" * 28  # overwrite the "fmt " chunk
    path.write_bytes(bytes(data))


def write_zero_samples(path):
    sf.write(str(path), np.zeros((0, 1), dtype=np.float32), RATE)


def write_header_only(path):
    # a RIFF/WAVE header that announces 1000 frames of data but holds none (truncated download)
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, RATE, RATE * 2, 2, 16)
    path.write_bytes(
        b"RIFF" + struct.pack("<I", 36 + 2000) + b"WAVE" + fmt + b"data" + struct.pack("<I", 2000)
    )


def write_empty_file(path):
    path.write_bytes(b"")


BAD_FILES = {
    "nan": (write_nan_wav, "NaN"),
    "text": (write_text_as_wav, "not a readable audio file"),
    "corrupt_header": (write_corrupt_header, "not a readable audio file"),
    "zero_samples": (write_zero_samples, "0 samples"),
    "header_only": (write_header_only, "0 samples"),
    "empty_file": (write_empty_file, "0 bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_refused_naming_the_file(tmp_path, case):
    writer, reason = BAD_FILES[case]
    path = tmp_path / f"bad_{case}.wav"
    writer(path)
    with pytest.raises(AudioFileError, match=reason) as caught:
        load_audio(path)
    assert str(path) in str(caught.value) and caught.value.path == str(path)
    if case != "nan":  # NaN needs decoding; audio_info reads the header only
        with pytest.raises(AudioFileError, match=reason):
            audio_info(path)


def test_missing_file_refused(tmp_path):
    path = tmp_path / "nowhere" / "missing.wav"
    for read in (load_audio, audio_info):
        with pytest.raises(AudioFileError, match="no such file") as caught:
            read(path)
        assert str(path) in str(caught.value)


def test_save_is_atomic_and_creates_folders(tmp_path, monkeypatch):
    path = tmp_path / "deep" / "folder" / "out.wav"
    x = sine(220.0, 0.5)
    save_audio(path, x, RATE)
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.wav"]
    assert audio_info(path).frames == len(x)

    # a write that dies half-way leaves the previous file intact and no temporary behind
    def broken_write(file, data, *args, **kwargs):
        with open(file, "wb") as handle:
            handle.write(b"RIFF-partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(sf, "write", broken_write)
    with pytest.raises(KeyboardInterrupt):
        save_audio(path, np.zeros(10, dtype=np.float32), RATE)
    monkeypatch.undo()
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.wav"]
    y, _ = load_audio(path)
    np.testing.assert_allclose(y[0], x, atol=1e-4)


def test_save_clips_with_warning(tmp_path, caplog):
    path = tmp_path / "loud.wav"
    x = np.array([0.5, 1.5, -2.0, 0.0], dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="after.data.audio"):
        save_audio(path, x, RATE, subtype="FLOAT")
    assert "clipping 2 samples" in caplog.text
    y, _ = load_audio(path)
    np.testing.assert_array_equal(y[0], [0.5, 1.0, -1.0, 0.0])


def test_save_refuses_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="extension"):
        save_audio(tmp_path / "out.xyz", np.zeros(10, dtype=np.float32), RATE)
    with pytest.raises(BadInputError, match="NaN"):
        save_audio(tmp_path / "out.wav", np.full(10, np.nan, dtype=np.float32), RATE)
    with pytest.raises(BadInputError, match="44100 Hz"):
        save_audio(tmp_path / "out.opus", np.zeros(100, dtype=np.float32), 44100)  # Opus has no 44.1 kHz
    assert sorted(tmp_path.iterdir()) == []


def test_is_silent_threshold():
    assert is_silent(np.zeros((1, 100)))
    assert is_silent(np.zeros(0))
    quiet = sine(440.0, 0.5, amplitude=10 ** (-70 / 20))  # about -73 dBFS RMS
    loud = sine(440.0, 0.5, amplitude=10 ** (-40 / 20))  # about -43 dBFS RMS
    assert is_silent(quiet) and not is_silent(loud)
    assert rms_db(np.ones(10)) == pytest.approx(0.0)
    assert rms_db(sine(440.0, 1.0, amplitude=1.0)) == pytest.approx(-3.01, abs=0.01)
    assert not is_silent(quiet, threshold_db=-80.0)
