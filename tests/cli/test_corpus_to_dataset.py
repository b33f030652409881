"""The foundation check, end to end: synth 2 minutes -> prepare -> info reports it."""

import json

from after.cli.main import main


def test_two_minute_corpus_gives_a_dataset_of_five_families(tmp_path, capsys):
    corpus, data = tmp_path / "corpus", tmp_path / "data"
    assert main(["-q", "synth", str(corpus), "--minutes", "2", "--seed", "0", "--no-progress"]) == 0
    assert main(["-q", "prepare", str(corpus), str(data), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["-q", "info", str(data), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["audio_seconds"] >= 100
    assert len([family for family, count in info["families"].items() if count > 0]) >= 5
    assert info["skipped"] == []
