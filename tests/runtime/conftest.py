"""A JACK dummy server for the live-host tests (clocked audio and MIDI with no sound card).

``jack_server`` starts ``jackd --no-realtime -d dummy -r 44100 -p 1024`` under a private server
name (so it never disturbs another JACK server), waits until it accepts clients, points
PortAudio and rtmidi at it through ``JACK_DEFAULT_SERVER``, and stops it by pid at the end, even
when a test failed. If ``AFTER_TEST_JACK_SERVER`` names a server that is already running, that
one is used and left running. Without jackd the tests are skipped, except in CI (``CI=true``)
where a missing jackd is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

JACK_RATE = 44100
JACK_PERIOD = 1024


def _server_answers(env: dict[str, str]) -> bool:
    result = subprocess.run(["jack_lsp"], env=env, capture_output=True, text=True, timeout=10)
    return result.returncode == 0 and "system:playback_1" in result.stdout


def _reinit_portaudio() -> None:
    """PortAudio lists JACK devices only if JACK ran when it initialised: start it over."""
    import sounddevice

    sounddevice._terminate()
    sounddevice._initialize()


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (required in CI: scripts/setup.sh installs jackd2)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory):
    """Name of a running JACK dummy server that this process's clients use."""
    if shutil.which("jackd") is None or shutil.which("jack_lsp") is None:
        _missing("jackd is not installed (apt install jackd2): live-host tests need a JACK dummy server")
    saved = {key: os.environ.get(key) for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    os.environ["JACK_NO_START_SERVER"] = "1"  # a client must never start a server on its own
    existing = os.environ.get("AFTER_TEST_JACK_SERVER")
    process = None
    if existing and _server_answers(dict(os.environ, JACK_DEFAULT_SERVER=existing)):
        name = existing
    else:
        name = f"after-test-{os.getpid()}"
        log_path = Path(tmp_path_factory.mktemp("jack")) / "jackd.log"
        env = dict(os.environ, JACK_DEFAULT_SERVER=name)
        command = [
            "jackd",
            "-n",
            name,
            "--no-realtime",
            "-d",
            "dummy",
            "-r",
            str(JACK_RATE),
            "-p",
            str(JACK_PERIOD),
        ]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 15
        while not _server_answers(env):
            if process.poll() is not None or time.monotonic() > deadline:
                _stop(process)
                tail = log_path.read_text(errors="replace")[-800:]
                _missing(f"jackd dummy server did not start: {tail}")
            time.sleep(0.1)
    os.environ["JACK_DEFAULT_SERVER"] = name
    _reinit_portaudio()
    try:
        yield name
    finally:
        import sounddevice

        sounddevice._terminate()  # close PortAudio's JACK client before its server goes away
        if process is not None:
            _stop(process)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        sounddevice._initialize()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
