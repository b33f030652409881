"""``after bench``: records, keys and reports on the tiny preset (timings are never asserted)."""

import json
import math

import pytest
import torch

from after.cli.main import main
from after.errors import BadInputError
from after.eval.bench import BenchOptions, parse_int_list, quantize_engine, run_bench
from after.eval.bench_report import markdown_report, plot_report, write_json

KEYS = {
    "mode", "preset", "precision", "backend", "steps", "chunk", "threads", "rtf", "latency_ms",
    "latency_frames", "block_ms", "encode_ms", "structure_ms", "timbre_ms", "step_ms", "diffuse_ms",
    "decode_ms", "call_ms", "peak_rss_mb", "cpu", "cores", "torch",
}  # fmt: skip


@pytest.fixture(scope="module")
def result():
    return run_bench(BenchOptions.quick(modes=("audio", "midi"), precisions=("fp32", "int8")))


def test_one_record_per_configuration_with_consistent_values(result):
    records = result["records"]
    configurations = {(r["mode"], r["precision"], r["chunk"], r["threads"], r["steps"]) for r in records}
    assert len(records) == len(configurations) == 2 * 2 * 1 * 1 * 2
    for r in records:
        assert set(r) >= KEYS
        assert r["preset"] == "tiny"
        timings = [
            r[k] for k in ("structure_ms", "timbre_ms", "step_ms", "diffuse_ms", "decode_ms", "call_ms")
        ]
        assert all(math.isfinite(v) and v > 0 for v in timings)
        assert r["rtf"] == pytest.approx(r["call_ms"] / r["block_ms"])
        # tiny: hop 1024 at 22.05 kHz, chunk 1 -> one frame of block + the codec's filter-bank delay
        assert r["block_ms"] == pytest.approx(1000 * 1024 / 22050)
        assert r["latency_ms"] >= r["block_ms"] and 1.0 <= r["latency_frames"] < 2.0
        assert (r["encode_ms"] > 0) == (r["mode"] == "audio")
        if r["precision"] == "int8":
            for key in ("rel_error_velocity", "rel_error_latents", "rel_error_audio", "rel_error_decode"):
                assert 0 < r[key] < 0.2, key
    assert result["memory"]["peak_rss_mb"] > 0


def test_reports(result, tmp_path):
    text = markdown_report(result)
    assert result["machine"]["cpu"] in text and f"torch {torch.__version__}" in text
    assert text.count("| audio |") + text.count("| midi |") >= len(result["records"])
    assert "int8 against fp32" in text
    saved = json.loads(write_json(result, tmp_path / "out.json").read_text())
    assert saved == json.loads(json.dumps(result["records"]))
    png = plot_report(result, tmp_path / "rtf.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_writes_json_markdown_and_plot(tmp_path, capsys):
    out = tmp_path / "bench.json"
    markdown, plot = str(tmp_path / "b.md"), str(tmp_path / "b.png")
    code = main(
        ["bench", "--quick", "--modes", "midi", "--json", str(out), "--markdown", markdown, "--plot", plot]
    )
    assert code == 0
    records = json.loads(out.read_text())
    assert isinstance(records, list) and {r["mode"] for r in records} == {"midi"}
    assert (tmp_path / "b.md").read_text() in capsys.readouterr().out
    assert (tmp_path / "b.png").stat().st_size > 0


def test_bad_settings_are_refused_with_the_value_named(caplog):
    with pytest.raises(BadInputError, match="--steps 'a,b'"):
        parse_int_list("a,b", "steps")
    with pytest.raises(BadInputError, match="preset 'huge'"):
        BenchOptions(preset="huge")
    with pytest.raises(BadInputError, match="--modes"):
        BenchOptions(modes=("audio", "video"))
    with pytest.raises(BadInputError, match="--chunks 0"):
        BenchOptions(chunks=(0,))
    assert main(["bench", "--quick", "--steps", "x"]) == 2
    assert "--steps 'x'" in caplog.text


def test_int8_engine_exports_and_the_file_matches_the_engine(tmp_path):
    """The int8 engine goes into an nn~ file: it scripts, saves, loads, and its output equals the
    int8 eager engine's on the same blocks."""
    from after.eval.bench import preset_bundle
    from after.export.model_export import ExportedAfter

    bundle = preset_bundle("tiny", "midi", 1)
    module = ExportedAfter(bundle, chunk=1)
    quantize_engine(module.engine).start(1)
    path = tmp_path / "int8.ts"
    module.export(path)
    loaded = torch.jit.load(str(path))
    generator = torch.Generator().manual_seed(0)
    params = [int(v) for v in loaded.generate_params.tolist()]
    x = torch.rand(1, params[0], 2048 // params[1], generator=generator)
    with torch.inference_mode():
        module.engine.start(1)
        expected = module.generate(x)
        got = loaded.generate(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
