"""``after demo``: a complete page whose links all resolve, outputs of the right length, the same
audio for the same seed, a walk whose timbre moves, block-by-block generation equal to the
offline one, and one clear line when no model is installed."""

import logging
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import soundfile as sf

from after.cli.main import main
from after.codec.config import codec_preset
from after.diffusion.config import diffusion_preset
from after.errors import BadInputError
from after.runtime import bundle as bundle_module
from after.runtime.bundle import random_bundle, release_bundle
from after.runtime.demo import DemoConfig, check_config, find_demo_models, run_demo
from after.runtime.demo_plan import stream_blocks
from after.runtime.demo_walk import walk_positions, walk_waypoints
from after.runtime.pipeline import build_pipeline
from after.runtime.timbre_map import fit_timbre_map

SECONDS = 2.0
CONFIG = DemoConfig(seed=3, steps=1, phrase_seconds=SECONDS, n_phrases=2, n_references=2, map_fit_steps=50)


@pytest.fixture(scope="module")
def bundles():
    audio = random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=0, name="tiny-audio")
    audio.timbre_map = fit_timbre_map(
        np.random.default_rng(0).standard_normal((8, audio.timbre_dim)), steps=10
    )
    midi = random_bundle(codec_preset("tiny"), diffusion_preset("tiny_midi"), seed=1, name="tiny-midi")
    return {"audio": audio, "midi": midi}  # the MIDI model has no map: the demo fits one


@pytest.fixture(scope="module")
def demo(bundles, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, bundles, CONFIG, progress=False)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and not value.startswith("#"):
                self.links.append((tag, value))


def page_links(out: Path) -> list[tuple[str, str]]:
    parser = _Links()
    parser.feed((out / "index.html").read_text(encoding="utf-8"))
    return parser.links


def test_every_linked_file_exists_is_relative_and_every_output_is_linked(demo):
    out, _ = demo
    links = page_links(out)
    for _, link in links:
        assert not urlparse(link).scheme and not link.startswith("/") and ".." not in link, link
        assert (out / link).is_file() and (out / link).stat().st_size > 0, link
    linked = {link for _, link in links}
    made = {str(p.relative_to(out)) for p in out.rglob("*") if p.suffix in (".wav", ".png", ".mid")}
    assert made - linked == set()  # nothing written that the page does not show
    tags = {tag for tag, _ in links}
    assert {"audio", "img", "a"} <= tags
    # 2 phrases x 2 references + 1 manual + 1 walk, per mode; a figure for each plus the maps
    assert sum(link.endswith(".png") for link in linked) == 2 * (2 * 2 + 2) + 2


def test_outputs_have_the_expected_length_rate_and_finite_samples(demo, bundles):
    out, report = demo
    assert [m.mode for m in report.modes] == ["audio", "midi"]
    for mode in report.modes:
        rate = bundles[mode.mode].sample_rate
        assert len(mode.items) == 6
        for item in mode.items:
            audio, file_rate = sf.read(str(out / item.output), dtype="float32")
            assert file_rate == rate
            phrases = CONFIG.n_phrases if item.kind == "walk" else 1
            assert audio.shape == (round(phrases * SECONDS * rate),)
            assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    for row in report.phrases + report.references:
        audio, _ = sf.read(str(out / row["audio"]))
        assert audio.shape == (round(SECONDS * 22050),) and np.abs(audio).max() > 0.5  # peak-normalised


def test_page_reports_models_settings_latency_and_measured_speed(demo):
    out, report = demo
    text = (out / "index.html").read_text(encoding="utf-8")
    for mode in report.modes:
        assert mode.real_time_factor > 0 and mode.worst_block_ms > 0
        assert mode.latency_ms == pytest.approx(mode.block_ms + mode.codec_latency_ms)
        assert mode.model_name in text
        assert f"{mode.real_time_factor:.3f}" in text and f"{mode.latency_ms:.1f} ms" in text
        assert f"{mode.worst_block_ms:.1f} ms" in text
        assert mode.settings["steps"] == 1 and mode.settings["seed"] == 3
    assert "real-time factor" in text and "guidance" in text and "chunk" in text
    midi = report.modes[1]
    assert midi.map_fitted and not report.modes[0].map_fitted
    assert "ships no timbre map" in text


def test_same_seed_gives_the_same_audio_bytes(demo, bundles, tmp_path):
    out, _ = demo
    run_demo(tmp_path, bundles, CONFIG, progress=False)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.suffix in (".wav", ".mid"))
    assert len(files) > 12
    for relative in files:
        assert (tmp_path / relative).read_bytes() == (out / relative).read_bytes(), relative


def test_the_walk_moves_the_timbre_along_its_path(demo):
    _, report = demo
    for mode in report.modes:
        vectors = np.array(mode.walk_vectors)  # [blocks, ZT]
        positions = np.array(mode.walk_positions)
        walk = mode.items[-1]
        assert walk.kind == "walk"
        blocks = math.ceil(walk.seconds * mode.sample_rate / mode.settings["block_samples"])
        assert len(vectors) == len(positions) == blocks  # one map position per block
        steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
        assert steps.min() > 0  # the walk never stands still
        assert steps.max() < 1.5 * steps.min()  # evenly spaced along the path (chords at corners)
        distinct = {tuple(np.round(v, 6)) for v in vectors}
        assert len(distinct) > len(vectors) // 2
        assert np.abs(vectors - vectors[0]).max() > 1e-3


def test_walk_goes_through_spread_references_and_round_a_circle_otherwise():
    references = np.array([[-0.8, -0.2], [0.5, 0.6], [0.4, -0.9]])
    waypoints = walk_waypoints(references)
    assert np.allclose(waypoints[:-1], references) and np.allclose(waypoints[-1], references[0])
    circle = walk_waypoints(np.array([[0.1, 0.1], [0.12, 0.1]]))
    assert np.allclose(np.linalg.norm(circle, axis=1), 0.7)
    positions = walk_positions(waypoints, 50)
    assert np.allclose(positions[0], references[0]) and np.allclose(positions[-1], references[0])
    near = [np.linalg.norm(positions - point, axis=1).min() for point in references]
    assert max(near) < 0.1  # it passes by every reference


@pytest.mark.parametrize("mode", ["audio", "midi"])
def test_block_by_block_generation_equals_the_offline_transfer(bundles, mode):
    pipeline = build_pipeline(bundles[mode], steps=2, seed=5)
    pipeline.set_timbre_vector(np.linspace(-0.5, 0.5, bundles[mode].timbre_dim))
    if mode == "audio":
        t = np.arange(9 * pipeline.block_size) / pipeline.sample_rate
        structure = (0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-3 * (t % 0.5))).astype(np.float32)
    else:
        from after.data.midi import Note

        structure = pipeline.roll_of_notes([Note(60, 100, 0.0, 0.4), Note(64, 80, 0.3, 0.9)], 1.0)
    offline = pipeline.transfer(structure)
    streamed, seconds = stream_blocks(pipeline, structure)
    assert len(seconds) == streamed.shape[1] // pipeline.block_size
    assert np.abs(streamed[:, : offline.shape[1]] - offline).max() <= 1e-4 * np.abs(offline).max()


def test_no_installed_model_stops_with_one_clear_line(tmp_path, monkeypatch, caplog):
    empty = tmp_path / "models"
    empty.mkdir()
    monkeypatch.setattr(bundle_module, "models_dir", lambda: empty)
    with caplog.at_level(logging.INFO):
        code = main(["demo", "--out", str(tmp_path / "out")])
    assert code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "no default model is installed" in errors[0] and "--model" in errors[0]
    assert not (tmp_path / "out" / "index.html").exists()


def test_only_the_installed_mode_runs_and_the_page_says_so(bundles, tmp_path, monkeypatch, caplog, capsys):
    models = tmp_path / "models"
    release_bundle(bundles["midi"], models / "default-midi")
    monkeypatch.setattr(bundle_module, "models_dir", lambda: models)
    assert list(find_demo_models()) == ["midi"]
    out = tmp_path / "out"
    args = [
        "demo",
        "--out",
        str(out),
        "--steps",
        "1",
        "--seconds",
        "1",
        "--phrases",
        "1",
        "--references",
        "1",
        "--no-progress",
    ]
    with caplog.at_level(logging.WARNING):
        assert main(args) == 0
    assert "demo:" not in capsys.readouterr().err  # no progress bar
    assert any("no audio model available" in r.getMessage() for r in caplog.records)
    text = (out / "index.html").read_text(encoding="utf-8")
    assert "Only a MIDI to audio model is available" in text
    assert (out / "midi" / "walk.wav").is_file() and not (out / "audio").exists()


def test_bad_arguments_are_refused_with_their_value(bundles, tmp_path, caplog):
    audio_model = release_bundle(bundles["audio"], tmp_path / "audio-model")
    with caplog.at_level(logging.ERROR):
        code = main(["demo", "--out", str(tmp_path / "o"), "--midi-model", str(audio_model)])
    assert code == 2 and "is an audio model, not a MIDI model" in caplog.records[-1].getMessage()
    with pytest.raises(BadInputError, match=r"phrase seconds=0\.1"):
        check_config(DemoConfig(phrase_seconds=0.1))
    with pytest.raises(BadInputError, match="references=9"):
        check_config(DemoConfig(n_references=9))
    with caplog.at_level(logging.ERROR):
        code = main(["demo", "--out", str(tmp_path / "t"), "--threads", "-2"])
    assert (
        code == 2
        and "--threads -2: expected a whole number of CPU threads" in caplog.records[-1].getMessage()
    )
    assert not (tmp_path / "t").exists()


def test_page_renders_in_a_headless_browser(demo, tmp_path):
    browser = next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
    )
    if browser is None:
        pytest.skip("no chromium: the headless rendering check needs a browser")
    out, _ = demo
    shot = tmp_path / "page.png"
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
         "--window-size=1200,3000", (out / "index.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-500:]
    assert shot.is_file() and shot.stat().st_size > 10_000
