"""Codec training: the loss falls, runs stop and resume exactly, DDP keeps ranks identical."""

import contextlib
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from codec_runs import quiet_options, synthetic_sets, tiny_run_config

from after.errors import BadInputError
from after.train.codec_module import train_codec
from after.train.run import CONFIG_KEY, RunFolder, checkpoint_step, load_checkpoint

torch.set_num_threads(1)


class RecordMetric(L.Callback):
    """Collect a logged training metric after every batch."""

    def __init__(self, name: str) -> None:
        self.name, self.values = name, []

    def on_train_batch_end(self, trainer, *args) -> None:
        if self.name in trainer.callback_metrics:
            self.values.append(float(trainer.callback_metrics[self.name]))


def test_stft_loss_falls_by_half_on_synthetic_audio(tmp_path):
    record = RecordMetric("train/stft")
    # the tiny preset with a higher learning rate, so that 300 steps (~40 s) show a clear fall
    train_codec(
        tmp_path / "run",
        tiny_run_config(learning_rate=3e-3),
        quiet_options(max_steps=300),
        datasets=synthetic_sets(),
        callbacks=[record],
    )
    first, last = sum(record.values[:10]) / 10, sum(record.values[-10:]) / 10
    assert len(record.values) == 300
    assert last < 0.5 * first, (first, last)


def test_run_folder_has_config_and_weights_only_checkpoints(tmp_path):
    config = tiny_run_config()
    train_codec(tmp_path, config, quiet_options(max_steps=4, checkpoint_every=2), datasets=synthetic_sets())
    run = RunFolder(tmp_path)
    assert run.load_config() == config
    assert [checkpoint_step(p) for p in run.checkpoints()] == [2, 4]
    checkpoint = load_checkpoint(run.latest_checkpoint())  # torch.load(weights_only=True)
    assert checkpoint[CONFIG_KEY] == config
    assert checkpoint["global_step"] == 4
    assert any(key.startswith("codec.") for key in checkpoint["state_dict"])
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))


def test_new_run_refuses_a_folder_with_checkpoints(tmp_path):
    train_codec(tmp_path, tiny_run_config(), quiet_options(max_steps=1), datasets=synthetic_sets())
    with pytest.raises(BadInputError, match="--resume"):
        train_codec(tmp_path, tiny_run_config(), quiet_options(max_steps=2), datasets=synthetic_sets())


class CaptureStart(L.Callback):
    """Remember the step and optimiser states a (resumed) run starts from."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.step = trainer.global_step
        self.states = [
            {
                k: {n: t.clone() if torch.is_tensor(t) else t for n, t in v.items()}
                for k, v in opt.state_dict()["state"].items()
            }
            for opt in trainer.optimizers
        ]


def test_resume_continues_step_and_optimiser_state(tmp_path):
    config = tiny_run_config(adversarial_start=3, discriminator_every=2)
    train_codec(tmp_path, config, quiet_options(max_steps=6, checkpoint_every=3), datasets=synthetic_sets())
    saved = load_checkpoint(RunFolder(tmp_path).latest_checkpoint())
    capture = CaptureStart()
    train_codec(
        tmp_path,
        config,
        quiet_options(max_steps=10, checkpoint_every=3),
        resume=True,
        datasets=synthetic_sets(),
        callbacks=[capture],
    )
    assert capture.step == 6
    for restored, stored in zip(capture.states, saved["optimizer_states"], strict=True):
        assert restored.keys() == stored["state"].keys() and restored
        for index, tensors in restored.items():
            for name, value in tensors.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(stored["state"][index][name])), (
                    name
                )
    final = load_checkpoint(RunFolder(tmp_path).latest_checkpoint())
    assert final["global_step"] == 10
    # steps 3, 5, 7, 9 train the discriminator, the other six the codec;
    # the Adam step counts continue across the resume
    generator_steps = {float(s["step"]) for s in final["optimizer_states"][0]["state"].values()}
    discriminator_steps = {float(s["step"]) for s in final["optimizer_states"][1]["state"].values()}
    assert generator_steps == {6.0} and discriminator_steps == {4.0}


class SendSignal(L.Callback):
    def __init__(self, signum: int, at_step: int) -> None:
        self.signum, self.at_step = signum, at_step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_writes_a_checkpoint_and_stops(tmp_path, signum):
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN when started in the background
    try:
        interrupted = train_codec(
            tmp_path,
            tiny_run_config(),
            quiet_options(max_steps=50, checkpoint_every=100),
            datasets=synthetic_sets(),
            callbacks=[SendSignal(signum, 3)],
        )
    except SystemExit:  # Lightning ends a SIGTERM-ed run by raising SystemExit
        interrupted = True
    assert interrupted
    latest = RunFolder(tmp_path).latest_checkpoint()
    assert latest is not None and 3 <= checkpoint_step(latest) <= 4
    assert load_checkpoint(latest)["global_step"] == checkpoint_step(latest)
    assert signal.getsignal(signal.SIGINT) is handler_before  # the run restores what it found


GROUP_SIGNAL_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    sys.path.insert(0, {tests!r})
    from codec_runs import quiet_options, synthetic_sets, tiny_run_config
    from after.train.codec_module import train_codec

    torch.set_num_threads(1)
    try:
        interrupted = train_codec(
            {out!r},
            tiny_run_config(),
            quiet_options(max_steps=100000, checkpoint_every=5),
            datasets=synthetic_sets(items=64),
            num_workers=2,
        )
    except SystemExit:  # Lightning's way to end a SIGTERM-ed run
        interrupted = True
    print("interrupted", interrupted)
    """
)


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # fields after the command name: state, ppid, pgrp, ...
            children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
@pytest.mark.parametrize("how", ["group", "command"])
def test_sigterm_to_the_process_group_spares_the_loader_workers(tmp_path, how):
    """``kill -- -PGID`` (a shell job, Ctrl-C) must not reach the DataLoader workers, so the training
    process finishes its step and writes its checkpoint; the process then ends with its workers
    (``command``: the run ends the same way from the documented ``kill`` of its own pid)."""
    script = tmp_path / "group_run.py"
    run_dir = tmp_path / "run"
    script.write_text(GROUP_SIGNAL_SCRIPT.format(tests=str(Path(__file__).parent), out=str(run_dir)))
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,  # its own process group, as a job in a shell or a scheduler
    )
    workers = []
    try:
        deadline = time.monotonic() + 120
        while not (run_dir.exists() and RunFolder(run_dir).latest_checkpoint()):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
            time.sleep(0.2)
        seen = checkpoint_step(RunFolder(run_dir).latest_checkpoint())
        workers = _children(process.pid)
        assert len(workers) >= 2  # the two training workers
        if how == "group":
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            for pid in [process.pid, *workers]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert process.returncode == 0, stderr[-3000:]
    assert "interrupted True" in stdout
    assert "killed by signal" not in stderr
    latest = RunFolder(run_dir).latest_checkpoint()
    assert checkpoint_step(latest) > seen  # the interrupt checkpoint, off the 5-step grid
    assert load_checkpoint(latest)["global_step"] == checkpoint_step(latest)
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)  # no worker left behind


def test_loader_workers_are_seeded_as_lightning_seeds_them(monkeypatch):
    """Our worker start-up replaces Lightning's, so it must seed the same way."""
    from lightning.fabric.utilities.seed import pl_worker_init_function

    import after.train.audio_data as audio_data

    monkeypatch.setenv("PL_SEED_WORKERS", "1")
    groups = []
    monkeypatch.setattr(audio_data.os, "setpgrp", lambda: groups.append("new"))  # not this test process
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        torch.manual_seed(1234)
        pl_worker_init_function(1, rank=3)
        expected = torch.rand(4)
        torch.manual_seed(1234)
        audio_data.init_loader_worker(1, rank=3)
        assert torch.equal(torch.rand(4), expected)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and groups == ["new"]
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])


def test_adversarial_phase_updates_codec_and_discriminator(tmp_path):
    config = tiny_run_config(adversarial_start=2, discriminator_every=2)
    train_codec(tmp_path, config, quiet_options(max_steps=2, checkpoint_every=2), datasets=synthetic_sets())
    before = load_checkpoint(RunFolder(tmp_path).latest_checkpoint())["state_dict"]
    train_codec(tmp_path, config, quiet_options(max_steps=5), resume=True, datasets=synthetic_sets())
    after = load_checkpoint(RunFolder(tmp_path).latest_checkpoint())["state_dict"]
    for prefix in ("codec.", "discriminator."):
        changed = [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]
        assert changed, f"no {prefix} weight changed in the adversarial phase"


class FirstCropsNan(torch.utils.data.Dataset):
    """A synthetic set whose first ``bad`` crops served (in call order) hold a NaN sample."""

    def __init__(self, source: torch.utils.data.Dataset, bad: int) -> None:
        self.source, self.bad, self.served = source, bad, 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        crop = self.source[index].clone()
        self.served += 1
        if self.served <= self.bad:
            crop[..., 100] = float("nan")
        return crop


def test_non_finite_gradients_skip_the_step_and_training_goes_on(tmp_path, caplog):
    train_set, val_set = synthetic_sets()
    poisoned = FirstCropsNan(train_set, bad=4)  # the whole first batch of 4
    train_codec(tmp_path, tiny_run_config(), quiet_options(max_steps=2), datasets=(poisoned, val_set))
    checkpoint = load_checkpoint(RunFolder(tmp_path).latest_checkpoint())
    # the poisoned batch took no step: 2 steps needed 3 batches, and no weight became NaN
    assert checkpoint["global_step"] == 2
    assert poisoned.served == 12
    weights = [v for v in checkpoint["state_dict"].values() if v.is_floating_point()]
    assert all(torch.isfinite(v).all() for v in weights)
    assert "gradients are not finite" in caplog.text


DDP_SCRIPT = textwrap.dedent(
    """
    import sys
    import lightning as L
    import torch
    sys.path.insert(0, {tests!r})
    from codec_runs import quiet_options, synthetic_sets, tiny_run_config
    from after.train.codec_module import train_codec
    from after.train.run import train_strategy

    torch.set_num_threads(1)

    class DumpWeights(L.Callback):
        def on_train_end(self, trainer, pl_module):
            torch.save(pl_module.state_dict(), {out!r} + f"/rank{{trainer.global_rank}}.pt")

    options = quiet_options(max_steps=4, devices=2, strategy=train_strategy("ddp"))
    config = tiny_run_config(adversarial_start=1, discriminator_every=2, batch_size=2)
    train_codec({out!r} + "/run", config, options, datasets=synthetic_sets(), callbacks=[DumpWeights()])
    """
)


def test_ddp_two_cpu_processes_keep_identical_weights(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    initial = RunFolder(tmp_path / "run").latest_checkpoint()
    assert checkpoint_step(initial) == 4
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key


class StartWeights(L.Callback):
    def on_train_start(self, trainer, module) -> None:
        self.weights = {k: v.detach().clone() for k, v in module.codec.state_dict().items()}


def test_init_from_starts_a_new_run_at_the_source_weights_and_refuses_another_architecture(tmp_path):
    source = tmp_path / "source"
    train_codec(
        source, tiny_run_config(learning_rate=3e-3), quiet_options(max_steps=20), datasets=synthetic_sets()
    )
    trained = load_checkpoint(RunFolder(source).latest_checkpoint())["state_dict"]
    start = StartWeights()
    train_codec(tmp_path / "tuned", tiny_run_config(), quiet_options(max_steps=1), datasets=synthetic_sets(),
                callbacks=[start], init_from=source)  # fmt: skip
    assert start.weights.keys() == {k[len("codec.") :] for k in trained if k.startswith("codec.")}
    for key, value in start.weights.items():
        torch.testing.assert_close(value, trained[f"codec.{key}"])
    # the new run counts its own steps from 0
    assert checkpoint_step(RunFolder(tmp_path / "tuned").latest_checkpoint()) == 1

    other = tiny_run_config()
    other["codec"] = {**other["codec"], "latent_dim": other["codec"]["latent_dim"] * 2}
    with pytest.raises(BadInputError, match=r"source.*latent_dim"):
        train_codec(
            tmp_path / "wide", other, quiet_options(max_steps=1), datasets=synthetic_sets(), init_from=source
        )
    with pytest.raises(BadInputError, match=r"missing\.ckpt: codec not found"):
        train_codec(tmp_path / "x", tiny_run_config(), quiet_options(max_steps=1), datasets=synthetic_sets(),
                    init_from=tmp_path / "missing.ckpt")  # fmt: skip


def test_decoder_only_keeps_the_encoder_and_its_latents_and_improves_the_decoder(tmp_path, caplog):
    """``--decoder-only``: every weight outside the decoder (so every latent) stays bit-identical,
    through the adversarial phase too, while the reconstruction of the training audio improves."""
    from after.cli.main import main
    from after.codec.load import load_codec

    source = tmp_path / "source"
    train_codec(
        source, tiny_run_config(learning_rate=3e-3), quiet_options(max_steps=20), datasets=synthetic_sets()
    )
    record = RecordMetric("train/stft")
    config = tiny_run_config(
        learning_rate=3e-3, train_encoder=False, adversarial_start=30, discriminator_every=2
    )
    train_codec(tmp_path / "decoder", config, quiet_options(max_steps=36), datasets=synthetic_sets(),
                callbacks=[record], init_from=source)  # fmt: skip
    before = load_codec(source).module
    after = load_codec(tmp_path / "decoder").module
    old, new = before.state_dict(), after.state_dict()
    assert old.keys() == new.keys()
    encoder_side = [key for key in old if not key.startswith("decoder.")]
    assert encoder_side and all(torch.equal(old[key], new[key]) for key in encoder_side)
    assert any(not torch.equal(old[key], new[key]) for key in old if key.startswith("decoder."))
    audio = torch.stack([synthetic_sets()[0][i] for i in range(4)])
    with torch.no_grad():
        torch.testing.assert_close(before.encode(audio), after.encode(audio), rtol=0, atol=0)
    first, last = sum(record.values[:5]) / 5, sum(record.values[25:30]) / 5
    assert last < first, (first, last)

    # from the command line the option needs a codec to start from
    with caplog.at_level("ERROR"):
        code = main(["train-codec", "--data", str(tmp_path), "--out", str(tmp_path / "x"), "--decoder-only"])
    assert code == 2 and "--decoder-only trains the decoder of an existing codec" in caplog.text


def test_a_trained_codec_gains_an_oscillator_bank_by_training_its_decoder_alone(tmp_path):
    """``--decoder-only --oscillators N --init-from`` a codec without a bank: every weight it had
    starts where it was (the bank starts quiet), the encoder stays bit-identical, and the bank's own
    loss is logged and trains it (tests/codec/test_oscillators.py shows what it learns).
    A source whose bank differs from the one asked for is refused by name."""
    from after.codec.load import load_codec

    source = tmp_path / "source"
    train_codec(
        source, tiny_run_config(learning_rate=3e-3), quiet_options(max_steps=10), datasets=synthetic_sets()
    )

    # 27.5 Hz to 1.7 kHz in quarter tones; 1.5-s crops, so that the bank's 8192-point loss sees them
    def banked(weight: float) -> dict:
        config = tiny_run_config(train_encoder=False, oscillator_weight=weight, crop_samples=32768)
        config["codec"] = {**config["codec"], "oscillators": 144, "oscillators_per_octave": 24}
        return config

    start, record = StartWeights(), RecordMetric("train/oscillators")
    data = synthetic_sets(samples=32768)
    train_codec(tmp_path / "bank", banked(5.0), quiet_options(max_steps=8), datasets=data,
                callbacks=[start, record], init_from=source)  # fmt: skip
    before = load_codec(source).module
    after = load_codec(tmp_path / "bank").module
    assert after.has_oscillators and not before.has_oscillators
    old, new = before.state_dict(), after.state_dict()
    bank_keys = {key for key in new if key.startswith("decoder.oscillators.")}
    assert bank_keys and set(new) - bank_keys == set(old)
    for key in old:  # the run started from the source's weights
        torch.testing.assert_close(start.weights[key], old[key])
        if not key.startswith("decoder."):
            assert torch.equal(old[key], new[key]), key
    assert any(not torch.equal(start.weights[key], new[key]) for key in bank_keys)
    # the bank's own loss is logged every step and starts at ~1 (a quiet bank plays nothing)...
    assert len(record.values) == 8 and record.values[0] > 0.99
    # ...and drives the bank: without it (weight 0) the same steps leave the bank elsewhere
    silent = RecordMetric("train/oscillators")
    train_codec(tmp_path / "plain", banked(0.0), quiet_options(max_steps=8), datasets=data,
                callbacks=[silent], init_from=source)  # fmt: skip
    plain = load_codec(tmp_path / "plain").module.state_dict()
    assert not silent.values
    moved = [key for key in bank_keys if not torch.allclose(plain[key], new[key], atol=1e-4)]
    assert moved, "the bank's loss did not change how the bank trained"

    other = tiny_run_config()
    other["codec"] = {**other["codec"], "oscillators": 48}
    with pytest.raises(BadInputError, match=r"bank: codec architecture differs \(oscillators: 144 there"):
        train_codec(tmp_path / "x", other, quiet_options(max_steps=1), datasets=synthetic_sets(),
                    init_from=tmp_path / "bank")  # fmt: skip


def test_the_banks_residual_target_trains_it_for_what_the_decoder_does_not_play(tmp_path):
    """``oscillator_target="residual"``: the bank's own loss is measured against what the
    convolutional decoder's output lacks, so the same steps train the bank otherwise than against
    the whole target; the loss is logged every step. An unknown target is refused by name."""
    from after.codec.load import load_codec

    source = tmp_path / "source"
    train_codec(
        source, tiny_run_config(learning_rate=3e-3), quiet_options(max_steps=10), datasets=synthetic_sets()
    )

    def banked(target: str) -> dict:
        config = tiny_run_config(train_encoder=False, oscillator_weight=5.0, crop_samples=32768,
                                 oscillator_target=target)  # fmt: skip
        config["codec"] = {**config["codec"], "oscillators": 144, "oscillators_per_octave": 24}
        return config

    data = synthetic_sets(samples=32768)
    weights = {}
    for target in ("whole", "residual"):
        record = RecordMetric("train/oscillators")
        train_codec(tmp_path / target, banked(target), quiet_options(max_steps=6), datasets=data,
                    callbacks=[record], init_from=source)  # fmt: skip
        assert len(record.values) == 6 and all(math.isfinite(v) for v in record.values)
        weights[target] = load_codec(tmp_path / target).module.state_dict()
    bank_keys = [key for key in weights["whole"] if key.startswith("decoder.oscillators.")]
    assert any(not torch.allclose(weights["whole"][k], weights["residual"][k], atol=1e-5) for k in bank_keys)

    with pytest.raises(BadInputError, match="oscillator_target 'half': expected one of whole, residual"):
        train_codec(tmp_path / "bad", banked("half"), quiet_options(max_steps=1), datasets=data,
                    init_from=source)  # fmt: skip


def test_fine_spectral_loss_joins_the_training_objective_and_falls(tmp_path):
    """With ``fine_spectral_weight`` the whole reconstruction's spectral convergence at FFT 8192 and
    4096 is logged and falls on sines and chirps (no oscillator bank needed)."""
    record = RecordMetric("train/fine_spectral")
    config = tiny_run_config(learning_rate=3e-3, fine_spectral_weight=1.0, crop_samples=32768)
    train_codec(tmp_path / "run", config, quiet_options(max_steps=30), datasets=synthetic_sets(samples=32768),
                callbacks=[record])  # fmt: skip
    assert len(record.values) == 30
    first, last = sum(record.values[:5]) / 5, sum(record.values[-5:]) / 5
    assert last < 0.9 * first, (first, last)


def test_log_frequency_loss_joins_the_training_objective_and_falls(tmp_path):
    """With ``log_frequency_weight`` the codec also minimises the log-frequency distance, which is
    logged and falls on the tiny synthetic set."""
    record = RecordMetric("train/log_frequency")
    config = tiny_run_config(learning_rate=3e-3, log_frequency_weight=1.0)
    train_codec(tmp_path / "run", config, quiet_options(max_steps=30), datasets=synthetic_sets(),
                callbacks=[record])  # fmt: skip
    assert len(record.values) == 30
    first, last = sum(record.values[:5]) / 5, sum(record.values[-5:]) / 5
    assert last < 0.9 * first, (first, last)


def test_command_line_options_reach_the_run_config(tmp_path, monkeypatch, caplog):
    """``--decoder-only``, ``--no-perceptual-weighting``, ``--log-frequency-weight``,
    ``--stft-sizes``, ``--oscillators`` and ``--oscillator-weight`` end up in the run config that
    ``config.json`` and every checkpoint keep (so a resumed run trains the same way); malformed FFT
    sizes, weights and oscillator counts are refused."""
    import after.train.codec_module as codec_module
    from after.cli.main import main

    seen = {}

    def capture(out, config, options, **kwargs):
        seen.update(config=config, kwargs=kwargs)
        return False

    monkeypatch.setattr(codec_module, "train_codec", capture)
    args = ["train-codec", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--preset", "small"]
    options = ["--decoder-only", "--init-from", "codec", "--no-perceptual-weighting"]
    assert main([*args, *options, "--log-frequency-weight", "0.5", "--stft-sizes", "8192,4096,32"]) == 0
    training = seen["config"]["training"]
    assert training["train_encoder"] is False and training["perceptual_weighting"] is False
    assert training["log_frequency_weight"] == 0.5 and tuple(training["stft_sizes"]) == (8192, 4096, 32)
    for bad in ("8192,3000", "8192,,64", "8"):
        assert main([*args, "--stft-sizes", bad]) == 2
    assert "--stft-sizes: expected powers of two of at least 16, got '8'" in caplog.text
    assert seen["kwargs"]["init_from"] == "codec"
    assert main(args) == 0
    training = seen["config"]["training"]
    assert training["train_encoder"] is True and training["perceptual_weighting"] is True
    assert training["log_frequency_weight"] == 0.0
    assert seen["config"]["codec"]["oscillators"] == 0 and training["oscillator_weight"] == 1.0
    assert training["fine_spectral_weight"] == 0.0
    tuning = ["--oscillators", "336", "--oscillator-weight", "0.5", "--fine-spectral-weight", "2"]
    assert main([*args, *options, *tuning]) == 0
    assert seen["config"]["codec"]["oscillators"] == 336
    assert seen["config"]["training"]["oscillator_weight"] == 0.5
    assert seen["config"]["training"]["fine_spectral_weight"] == 2.0
    assert seen["config"]["training"]["oscillator_target"] == "whole"
    assert main([*args, *options, "--oscillators", "336", "--oscillator-target", "residual"]) == 0
    assert seen["config"]["training"]["oscillator_target"] == "residual"
    with pytest.raises(SystemExit):  # argparse refuses a target it does not know
        main([*args, "--oscillator-target", "half"])
    for option in ("--oscillator-weight", "--fine-spectral-weight"):
        for bad in ("-1", "nan"):
            assert main([*args, option, bad]) == 2
            assert f"{option} {float(bad)}: expected a finite value >= 0" in caplog.text
    assert main([*args, "--oscillators", "500"]) == 2  # above Nyquist at 22.05 kHz
    assert "must stay below Nyquist" in caplog.text
