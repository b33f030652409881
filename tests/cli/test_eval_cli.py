"""``after eval``: report, JSON, model card and the pass/fail table; bad input is one line, exit 2."""

from __future__ import annotations

import json
import logging

import pytest

from after.cli.main import main
from after.codec.config import codec_preset
from after.diffusion.config import diffusion_preset
from after.runtime.bundle import random_bundle, release_bundle


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-models")
    audio = random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=0, name="tiny-audio")
    midi = random_bundle(codec_preset("tiny"), diffusion_preset("tiny_midi"), seed=0, name="tiny-midi")
    return release_bundle(audio, root / "audio"), release_bundle(midi, root / "midi")


def test_eval_writes_report_json_and_card(models, tmp_path, capsys):
    report, out, card = tmp_path / "report", tmp_path / "eval.json", tmp_path / "MODEL_CARD.md"
    code = main(["eval", "--model", str(models[0]), "--midi-model", str(models[1]), "--cases", "2",
                 "--clip-seconds", "3", "--seed", "4", "--no-transcription", "--report", str(report),
                 "--json", str(out), "--model-card", str(card)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| check | system |" in printed and "Overall: **" in printed
    assert "notice: note/onset F1 unavailable" in printed
    result = json.loads(out.read_text())
    assert set(result["models"]) == {"audio", "midi"} and result["options"]["cases"] == 2
    assert result["options"]["seed"] == 4 and result["transcription"] is False
    systems = {r["system"] for r in result["rows"]}
    assert {"audio_to_audio", "midi_to_audio", "codec_reconstruction", "ground_truth"} <= systems
    assert "codec_reconstruction_midi" not in systems  # both models share one codec
    assert json.loads((report / "eval.json").read_text())["rows"] == result["rows"]
    text = (report / "report.md").read_text()
    assert "| audio_to_audio |" in text and "| midi_to_audio |" in text and "unavailable" in text
    card_text = card.read_text()
    assert "# Model card: tiny-audio" in card_text and "Real-time factor:" in card_text
    assert "| beats_copies | audio_to_audio |" in card_text


def test_a_midi_model_alone_is_evaluated_in_midi_mode(models, tmp_path):
    out = tmp_path / "eval.json"
    code = main(["eval", "--model", str(models[1]), "--cases", "1", "--clip-seconds", "2",
                 "--no-transcription", "--report", str(tmp_path / "r"), "--json", str(out)])  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result["models"]) == {"midi"} and result["leakage"] is None


def test_extra_codecs_get_their_own_rows(models, tmp_path):
    """``--codec`` scores another codec's reconstructions on the same triplets: given the model's own
    codec (its released folder), its row equals the codec_reconstruction row, metric by metric."""
    out = tmp_path / "eval.json"
    code = main(["eval", "--model", str(models[1]), "--codec", str(models[1]), "--cases", "2",
                 "--clip-seconds", "2", "--no-transcription", "--report", str(tmp_path / "r"),
                 "--json", str(out)])  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    extra = f"codec:{models[1]}"
    rows = {(r["system"], r["triplet"]): r for r in result["rows"]}
    for triplet in range(2):
        ours, theirs = rows[("codec_reconstruction", triplet)], rows[(extra, triplet)]
        for metric in ("lsd", "mfcc_distance"):
            assert theirs[metric] == pytest.approx(ours[metric], rel=1e-5), metric
    assert f"| {extra} |" in (tmp_path / "r" / "report.md").read_text()
    assert {c["system"] for c in result["checks"]}.isdisjoint({extra})  # the checks judge the model


def test_threads_hold_for_the_run_only(models, tmp_path, monkeypatch):
    """The models run on ``--threads`` torch threads (1 by default), restored after the run."""
    import torch

    import after.eval.protocol_report as protocol_report

    seen, real = [], protocol_report.run_eval

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(protocol_report, "run_eval", recording)
    before = torch.get_num_threads()
    base = ["eval", "--model", str(models[1]), "--cases", "1", "--clip-seconds", "2", "--no-transcription"]
    assert main([*base, "--report", str(tmp_path / "one")]) == 0
    assert main([*base, "--report", str(tmp_path / "two"), "--threads", "2"]) == 0
    assert seen == [1, 2] and torch.get_num_threads() == before


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "{tmp}/nowhere"], "model not found"),
        (["--model", "{audio}", "--cases", "0"], "--cases 0: expected a whole number"),
        (["--model", "{audio}", "--cases", "many"], "--cases 'many'"),
        (["--model", "{audio}", "--midi-model", "{audio}"], "is an audio model, not a MIDI model"),
        (["--model", "{midi}", "--midi-model", "{midi}"], "is a MIDI model and --midi-model gives another"),
        (["--model", "{audio}", "--clip-seconds", "0.1"], "clip_s=0.1"),
        (["--model", "{audio}", "--codec", "{tmp}/no-codec"], "no-codec: codec not found"),
        (["--model", "{audio}", "--threads", "0"], "--threads 0: expected a whole number of CPU threads"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(models, tmp_path, caplog, extra, message):
    names = {"tmp": str(tmp_path), "audio": str(models[0]), "midi": str(models[1])}
    argv = ["eval", *(arg.format(**names) for arg in extra), "--report", str(tmp_path / "r")]
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0] and message in errors[0]
    assert not (tmp_path / "r").exists()  # nothing written
