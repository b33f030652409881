"""`after live` itself, end to end on a JACK dummy server: a released MIDI model, notes sent to its
MIDI port, an OSC message changing the guidance, audio played out and recorded."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import time

import mido
import numpy as np
import pytest
import soundfile as sf
from pythonosc.udp_client import SimpleUDPClient

from after.codec.config import codec_preset
from after.diffusion.config import diffusion_preset
from after.runtime.bundle import random_bundle, release_bundle

JACK_RATE = 44100


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(condition, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.jack
@pytest.mark.timeout(180)
def test_after_live_plays_a_midi_model_with_midi_and_osc(jack_server, tmp_path):
    codec = dataclasses.replace(codec_preset("tiny"), sample_rate=JACK_RATE)  # the device's rate
    release_bundle(random_bundle(codec, diffusion_preset("tiny_midi"), seed=0), tmp_path / "model")
    osc_port = _free_udp_port()
    record = tmp_path / "played.wav"
    command = [sys.executable, "-m", "after", "live", "--model", str(tmp_path / "model"), "--mode", "midi"]
    command += ["--midi-api", "UNIX_JACK", "--osc-port", str(osc_port), "--record", str(record)]
    command += ["--duration", "12", "--steps", "2", "--block-frames", "2"]
    backend = mido.Backend("mido.backends.rtmidi", api="UNIX_JACK", load=True)
    before = set(backend.get_output_names())
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sender = None
    try:
        assert _wait_for(lambda: set(backend.get_output_names()) - before), "after live opened no MIDI port"
        (port_name,) = set(backend.get_output_names()) - before
        sender = backend.open_output(port_name)
        time.sleep(1.0)
        for pitch in (60, 64, 67):
            sender.send(mido.Message("note_on", note=pitch, velocity=100))
        time.sleep(1.5)
        SimpleUDPClient("127.0.0.1", osc_port).send_message("/after/guidance_timbre", 0.5)
        SimpleUDPClient("127.0.0.1", osc_port).send_message("/after/steps", -3)  # refused, logged
        time.sleep(1.5)
        for pitch in (60, 64, 67):
            sender.send(mido.Message("note_off", note=pitch))
        output, _ = process.communicate(timeout=120)
    finally:
        if sender is not None:
            sender.close()
        if process.poll() is None:
            process.kill()
            process.communicate()
    print(output)
    assert process.returncode == 0, output
    assert "latency:" in output and "underruns" in output
    assert "MIDI notes 6" in output
    assert "parameter updates 1 applied, 1 refused" in output  # guidance changed, bad steps refused
    played, rate = sf.read(record, dtype="float32")
    assert rate == JACK_RATE and played.size > 2 * JACK_RATE
    assert np.isfinite(played).all() and np.abs(played).max() > 1e-4  # audio came out
