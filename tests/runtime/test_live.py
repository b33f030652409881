"""The live host: file-to-file runs, bad input, and real time through a JACK dummy server."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
from live_pipelines import GainDelayPipeline, SineSynthPipeline
from pythonosc.udp_client import SimpleUDPClient

from after.cli.main import main
from after.data.audio import save_audio
from after.data.midi import Note, save_notes
from after.errors import AfterError, AudioFileError, BadInputError, MidiFileError
from after.runtime.live import LiveHost, load_pipeline
from after.runtime.protocol import StreamingPipeline, check_parameter
from after.runtime.voices import VoiceAllocator, midi_file_events, render_events

RATE = 44100


def noisy_tone(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)[None]


def process_by_hand(pipeline, audio: np.ndarray) -> np.ndarray:
    """Run ``pipeline`` block by block over ``audio`` [1, T] (last block zero-padded)."""
    pipeline.reset()
    n_blocks = -(-audio.shape[1] // pipeline.block_size)
    padded = np.pad(audio, ((0, 0), (0, n_blocks * pipeline.block_size - audio.shape[1])))
    blocks = [pipeline.process(np.ascontiguousarray(b), None) for b in np.split(padded, n_blocks, axis=1)]
    return np.concatenate(blocks, axis=1)[:, : audio.shape[1]]


def run_in_thread(host: LiveHost):
    outcome: dict = {}

    def target():
        try:
            outcome["stats"] = host.run()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- the test pipelines honour the protocol -------------------------------------------------------


def test_test_pipelines_follow_the_protocol():
    for pipeline in (GainDelayPipeline(), SineSynthPipeline()):
        assert isinstance(pipeline, StreamingPipeline)
    with pytest.raises(BadInputError, match="steps=0"):
        check_parameter("steps", 0)
    with pytest.raises(BadInputError, match="expected 4"):
        check_parameter("timbre_vector", [0.1, 0.2], timbre_dims=4)
    with pytest.raises(BadInputError, match="unknown parameter"):
        check_parameter("volume", 1)
    assert check_parameter("steps", 8.0) == 8 and check_parameter("map_xy", [1, -1]) == (1.0, -1.0)


# -- file mode --------------------------------------------------------------------------------------


@pytest.mark.parametrize("realtime", [False, True])
def test_file_to_file_equals_processing_block_by_block(tmp_path, realtime):
    audio = noisy_tone(0.7 if realtime else 2.3)
    save_audio(tmp_path / "in.wav", audio, RATE, subtype="FLOAT")
    pipeline = GainDelayPipeline(hop_length=256, frames=4, delay=333)
    pipeline.set_parameter("guidance_structure", 0.75)
    stats = LiveHost(
        pipeline, input=tmp_path / "in.wav", output=tmp_path / "out.wav", realtime=realtime
    ).run()
    written, rate = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    expected = process_by_hand(GainDelayPipeline(hop_length=256, frames=4, delay=333), audio) * 0.75
    assert rate == RATE and written.shape == (audio.shape[1], 1)
    np.testing.assert_array_equal(written[:, 0], expected[0])
    assert np.abs(written).max() > 0.3  # not trivially silent
    assert stats.blocks == -(-audio.shape[1] // 1024) and stats.underruns == 0


def test_midi_file_to_audio_file_equals_the_synth_played_by_hand(tmp_path):
    notes = [Note(60, 100, 0.1, 0.6), Note(64, 80, 0.3, 0.9), Note(67, 60, 0.5, 1.2), Note(60, 127, 0.6, 0.8)]
    save_notes(tmp_path / "song.mid", notes)
    pipeline = SineSynthPipeline(hop_length=512, frames=4, n_voices=4)
    stats = LiveHost(pipeline, input=tmp_path / "song.mid", output=tmp_path / "out.wav", duration=1.5).run()
    written, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    by_hand = SineSynthPipeline(hop_length=512, frames=4, n_voices=4)
    n_blocks = stats.blocks
    voices = render_events(VoiceAllocator(4), midi_file_events(tmp_path / "song.mid", RATE), n_blocks, 4, 512)
    empty = np.zeros((0, 2048), dtype=np.float32)
    expected = np.concatenate([by_hand.process(empty, v) for v in voices], axis=1)[0]
    assert n_blocks == -(-round(1.5 * RATE) // 2048)
    np.testing.assert_array_equal(written, expected)
    assert stats.midi_notes == 0  # no port: the file's notes are not counted as live input
    assert np.abs(written[round(0.35 * RATE) : round(0.45 * RATE)]).max() > 0.5  # two notes sound


def test_file_output_without_input_needs_a_duration(tmp_path):
    host = LiveHost(SineSynthPipeline(), input=None, output=tmp_path / "out.wav")
    with pytest.raises(BadInputError, match="give a duration"):
        host.run()


# -- bad input --------------------------------------------------------------------------------------


def test_unreadable_input_files_are_refused_naming_the_file(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF....not really a wav")
    with pytest.raises(AudioFileError, match=r"garbage\.wav"):
        LiveHost(GainDelayPipeline(), input=garbage, output=tmp_path / "out.wav")
    with pytest.raises(AudioFileError, match="no such file"):
        LiveHost(GainDelayPipeline(), input=tmp_path / "missing.flac", output=tmp_path / "out.wav")
    bad_midi = tmp_path / "bad.mid"
    bad_midi.write_bytes(b"MThd nope")
    with pytest.raises(MidiFileError, match=r"bad\.mid"):
        LiveHost(SineSynthPipeline(), input=bad_midi, output=tmp_path / "out.wav")
    with pytest.raises(BadInputError, match="needs a MIDI pipeline"):
        LiveHost(GainDelayPipeline(), input=bad_midi, output=tmp_path / "out.wav")


def test_unknown_audio_device_is_one_clear_error(tmp_path):
    save_audio(tmp_path / "in.wav", noisy_tone(0.1), RATE)
    with pytest.raises(BadInputError, match="no-such-card-xyz") as caught:
        LiveHost(GainDelayPipeline(), input=tmp_path / "in.wav", output="no-such-card-xyz")
    assert "\n" not in str(caught.value)


def test_bad_osc_values_are_logged_and_ignored(tmp_path, caplog):
    save_audio(tmp_path / "in.wav", noisy_tone(1.5), RATE)
    pipeline = GainDelayPipeline()
    host = LiveHost(
        pipeline, input=tmp_path / "in.wav", output=tmp_path / "out.wav", realtime=True, osc_port=0
    )
    caplog.set_level(logging.WARNING)
    thread, outcome = run_in_thread(host)
    assert wait_for(lambda: host.osc_port != 0)
    client = SimpleUDPClient("127.0.0.1", host.osc_port)
    bad = [
        ("/after/steps", "many"),  # not a number
        ("/after/steps", -3),
        ("/after/steps", 2.5),
        ("/after/guidance_timbre", -1.0),
        ("/after/guidance_structure", float("nan")),
        ("/after/map", [0.2, 7.0]),
        ("/after/map", [0.2]),
        ("/after/timbre", [0.1, 0.2, 0.3]),  # this pipeline has 4 timbre dimensions: refused by it
        ("/after/timbre_file", str(tmp_path / "missing.wav")),
        ("/after/timbre_file", 3),
        ("/after/reset", 1),
        ("/after/volume", 1.0),  # unknown address
    ]
    for address, value in bad:
        client.send_message(address, value)
    client.send_message("/after/steps", 8)
    client.send_message("/after/guidance_structure", 0.5)
    client.send_message("/after/timbre", [0.1, -0.2, 0.3, 1.0])
    assert wait_for(lambda: pipeline.parameters()["guidance_structure"] == 0.5)
    thread.join(timeout=20)
    assert "error" not in outcome, outcome.get("error")
    stats = outcome["stats"]
    assert pipeline.parameters()["steps"] == 8
    np.testing.assert_allclose(pipeline.parameters()["timbre_vector"], [0.1, -0.2, 0.3, 1.0], rtol=1e-6)
    assert stats.rejected_updates == len(bad) and stats.parameter_updates == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(bad) and all("\n" not in r.getMessage() for r in warnings)
    assert any("/after/volume" in r.getMessage() for r in warnings)


def test_cli_live_without_a_pipeline_is_one_clear_line(tmp_path, caplog, monkeypatch):
    import after.runtime.bundle as bundle_module

    (tmp_path / "models").mkdir()
    monkeypatch.setattr(bundle_module, "models_dir", lambda: tmp_path / "models")
    save_audio(tmp_path / "in.wav", noisy_tone(0.1), RATE)
    with pytest.raises(AfterError, match="no default model is installed yet"):
        load_pipeline(None, "audio")
    code = main(["live", "--input", str(tmp_path / "in.wav"), "--output", str(tmp_path / "o.wav")])
    assert code == 2
    assert any("no default model is installed yet" in r.getMessage() for r in caplog.records)


def test_cli_lists_devices(capsys):
    assert main(["live", "--list-devices"]) == 0
    assert "host APIs" in capsys.readouterr().out


# -- real time through JACK ------------------------------------------------------------------------


@pytest.mark.jack
@pytest.mark.timeout(60)
def test_live_midi_and_osc_through_jack(jack_server, tmp_path, caplog):
    """~2.5 s of real time: notes from a MIDI port and an OSC guidance change reach the pipeline,
    and the synth's audio goes out through the JACK device (recorded by the host's output tap)."""
    caplog.set_level(logging.INFO)
    pipeline = SineSynthPipeline(hop_length=512, frames=4, n_voices=4)
    client_name = f"after-live-{os.getpid()}"
    host = LiveHost(
        pipeline, output=None, midi_api="UNIX_JACK", midi_client_name=client_name, osc_port=0,
        record=tmp_path / "played.wav", log_interval=1.0,
    )  # fmt: skip
    backend = mido.Backend("mido.backends.rtmidi", api="UNIX_JACK", load=True)
    thread, outcome = run_in_thread(host)
    sender = None
    try:
        assert wait_for(lambda: any(client_name in n for n in backend.get_output_names())), "no MIDI port"
        port_name = next(n for n in backend.get_output_names() if client_name in n)
        sender = backend.open_output(port_name)
        assert wait_for(lambda: host.osc_port != 0)
        time.sleep(0.3)
        sender.send(mido.Message("note_on", note=69, velocity=100))
        time.sleep(0.8)
        SimpleUDPClient("127.0.0.1", host.osc_port).send_message("/after/guidance_timbre", 0.5)
        time.sleep(0.8)
        sender.send(mido.Message("note_off", note=69))
        time.sleep(0.3)
        host.stop()  # as Ctrl-C would
        thread.join(timeout=30)
    finally:
        host.stop()
        thread.join(timeout=10)
        if sender is not None:
            sender.close()
    assert "error" not in outcome, outcome.get("error")
    stats = outcome["stats"]
    print(f"JACK run: {stats.summary()}")
    assert pipeline.parameters()["guidance_timbre"] == 0.5
    heard = [f for f in pipeline.received if ((f.pitch == 69) & (f.velocity == 100)).any()]
    assert heard and any(f.onset.any() for f in heard)  # the note and its onset reached the pipeline
    assert stats.midi_notes == 2 and stats.blocks > 10
    played, rate = sf.read(tmp_path / "played.wav", dtype="float32")
    assert rate == RATE and played.size > RATE
    level = 100 / 127
    peaks = (
        np.abs(played).reshape(-1)[: played.size // 2048 * 2048].reshape(-1, 2048).max(axis=1)
    )  # per block
    assert np.isclose(peaks, level, atol=0.02).any() and np.isclose(peaks, 0.5 * level, atol=0.02).any()
    spectrum = np.abs(np.fft.rfft(played))
    assert abs(np.argmax(spectrum) * RATE / played.size - 440.0) < 3.0  # the A4 that was sent
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "latency:" in messages and "summary:" in messages and "underruns" in messages


@pytest.mark.jack
@pytest.mark.timeout(60)
def test_live_audio_duplex_through_jack(jack_server, tmp_path):
    """Audio mode: the card's input feeds the pipeline block by block, its output is played."""
    pipeline = GainDelayPipeline(hop_length=512, frames=4, delay=100)
    host = LiveHost(pipeline, input=None, output=None, duration=1.5, record=tmp_path / "played.wav")
    assert host.latency_samples == 100 + host.buffer_samples and host.buffer_samples >= 2 * 2048
    stats = host.run()
    print(f"JACK duplex run: {stats.summary()}")
    assert stats.blocks > 5 and pipeline.samples_seen == stats.blocks * 2048
    played, _ = sf.read(tmp_path / "played.wav", dtype="float32")
    assert played.size >= stats.blocks * 2048 * 0.5  # the output tap saw the stream


@pytest.mark.jack
def test_unknown_midi_port_is_one_clear_error(jack_server):
    host = LiveHost(SineSynthPipeline(), midi_port="no-such-port-xyz", midi_api="UNIX_JACK", duration=1.0)
    with pytest.raises(BadInputError, match="no-such-port-xyz"):
        host.run()


@pytest.mark.jack
@pytest.mark.timeout(60)
def test_file_played_through_jack_is_what_the_pipeline_made(jack_server, tmp_path):
    """Input file -> JACK output: the output tap holds the host's silent prefill, then exactly
    the pipeline's blocks (when no underrun happened), and the run ends after the file's tail."""
    audio = noisy_tone(0.6, seed=3)
    save_audio(tmp_path / "in.wav", audio, RATE, subtype="FLOAT")
    pipeline = GainDelayPipeline(hop_length=512, frames=4, delay=64)
    host = LiveHost(pipeline, input=tmp_path / "in.wav", output=None, record=tmp_path / "played.wav")
    stats = host.run()
    played, _ = sf.read(tmp_path / "played.wav", dtype="float32")
    expected = process_by_hand(GainDelayPipeline(hop_length=512, frames=4, delay=64), audio)[0]
    start = host.buffer_samples
    assert played.size >= start + expected.size
    assert np.abs(played[:start]).max() == 0.0
    if stats.underruns == 0:
        np.testing.assert_array_equal(played[start : start + expected.size], expected)
    else:  # a loaded machine: silence was inserted, but the samples still came out in order
        print(f"underruns during the run: {stats.underruns}")
        assert np.abs(played).max() == pytest.approx(np.abs(expected).max(), rel=1e-6)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_ctrl_c_and_sigterm_end_cleanly_with_a_summary(tmp_path, signal_name):
    import signal
    import subprocess
    import sys

    save_audio(tmp_path / "in.wav", noisy_tone(20.0), RATE)
    script = (
        "import logging, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from live_pipelines import GainDelayPipeline\n"
        "from after.runtime.live import LiveHost\n"
        f"source, target = {str(tmp_path / 'in.wav')!r}, {str(tmp_path / 'o.wav')!r}\n"
        "LiveHost(GainDelayPipeline(), input=source, output=target, realtime=True, log_interval=0.2).run()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:
            if "blocks," in line:  # the first status line: the run is under way
                break
        process.send_signal(getattr(signal, signal_name))
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, rest
    assert f"stopping ({signal_name})" in rest and "summary:" in rest
    blocks = int(rest.split("summary: ")[1].split(" blocks")[0])
    written, _ = sf.read(tmp_path / "o.wav", dtype="float32")  # a complete, readable file
    assert 0 < blocks < 20.0 * RATE / 2048 and written.size == blocks * 2048
