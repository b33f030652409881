"""Our nn~ contract: params buffers, labels, attributes, and the check that loads files like nn~."""

import pytest
import torch

from after.export.check import check_export
from after.export.nn_tilde import NnTildeModule

torch.set_num_threads(1)


class Gain(NnTildeModule):
    """Audio in, audio out times a gain; ``energy`` gives one value per 64 samples."""

    def __init__(self, energy_ratio: int = 64, energy_channels: int = 2) -> None:
        super().__init__(sample_rate=48000)
        self.gain = 0.5
        self.energy_ratio = energy_ratio
        self.register_attribute("gain", 0.5)
        self.register_method("forward", 1, 1, 1, 1, ["audio in"], ["audio out"])
        self.register_method("energy", 1, 1, energy_channels, energy_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain

    @torch.jit.export
    def energy(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.reshape(x.shape[0], 1, -1, self.energy_ratio)  # [B, 1, T] -> [B, 1, T/r, r]
        return frames.pow(2).mean(-1).repeat(1, 2, 1)

    @torch.jit.export
    def get_gain(self) -> float:
        return self.gain

    @torch.jit.export
    def set_gain(self, gain: float) -> int:
        if gain < 0.0:
            return -1
        self.gain = gain
        return 0


def test_scripted_module_exposes_the_contract(tmp_path):
    Gain().export(tmp_path / "gain.ts")
    model = torch.jit.load(str(tmp_path / "gain.ts"))
    assert model.get_methods() == ["forward", "energy"]
    assert model.get_attributes() == ["gain"]
    assert model.get_sample_rate() == 48000
    assert model.energy_params.tolist() == [1, 1, 2, 64]
    assert model.forward_input_labels == ["audio in"]
    assert len(model.energy_output_labels) == 2
    assert model.gain_params.tolist() == [2]  # float
    assert model.set_gain(2.0) == 0 and model.get_gain() == 2.0
    assert model.set_gain(-1.0) == -1 and model.get_gain() == 2.0
    x = torch.randn(4, 1, 4096)
    assert torch.allclose(model(x), 2.0 * x)
    assert check_export(tmp_path / "gain.ts", audio=torch.randn(9000)) == []


def test_registration_refuses_wrong_shapes_and_labels():
    class WrongLength(Gain):
        @torch.jit.export
        def energy(self, x: torch.Tensor) -> torch.Tensor:
            return x[..., ::32].repeat(1, 2, 1)  # one value per 32 samples, not 64

    with pytest.raises(ValueError, match=r"'energy'.*expected float32 \(1, 2, 128\)"):
        WrongLength()
    with pytest.raises(ValueError, match="labels"):
        NnTildeModule(44100).register_method("forward", 1, 1, 1, 1, ["a", "b"], test=False)


def test_missing_setter_is_refused_before_scripting(tmp_path):
    class NoSetter(NnTildeModule):
        def __init__(self) -> None:
            super().__init__(44100)
            self.register_attribute("depth", 3)
            self.register_method("forward", 1, 1, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

        @torch.jit.export
        def get_depth(self) -> int:
            return 3

    with pytest.raises(ValueError, match="'depth' has no set_depth"):
        NoSetter().export(tmp_path / "x.ts")


def test_check_reports_wrong_params(tmp_path):
    model = Gain()
    model.energy_params = torch.tensor([1, 1, 2, 32])  # lies about its ratio
    model.export(tmp_path / "lying.ts")
    problems = check_export(tmp_path / "lying.ts")
    assert any("'energy'" in p and "expected (1, 2, 128)" in p for p in problems), problems


def test_check_reports_a_missing_method_and_attribute_accessors(tmp_path):
    class Broken(NnTildeModule):
        def __init__(self) -> None:
            super().__init__(44100)
            self.register_method("forward", 1, 1, 1, 1)
            self.register_method("decode", 8, 256, 1, 1, test=False)  # never written
            self.attributes.append("volume")  # no buffer, no get/set

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    torch.jit.script(Broken()).save(str(tmp_path / "broken.ts"))  # bypasses export()'s own guard
    problems = check_export(tmp_path / "broken.ts")
    assert any("'decode': listed by get_methods() but not in the file" in p for p in problems), problems
    assert any("attribute 'volume': missing get_volume() and set_volume()" in p for p in problems), problems


def test_check_reports_non_finite_output_and_unreadable_files(tmp_path):
    class Nan(Gain):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x / 0.0

    Nan().export(tmp_path / "nan.ts")
    assert any("NaN or inf" in p for p in check_export(tmp_path / "nan.ts"))
    (tmp_path / "junk.ts").write_bytes(b"not a model")
    assert check_export(tmp_path / "junk.ts") == [
        f"{tmp_path / 'junk.ts'}: not a TorchScript file (RuntimeError)"
    ]
    assert "file not found" in check_export(tmp_path / "none.ts")[0]


def test_check_reports_a_file_without_the_contract(tmp_path):
    torch.jit.script(torch.nn.Identity()).save(str(tmp_path / "plain.ts"))
    assert check_export(tmp_path / "plain.ts") == [
        "no get_methods() method: nn~ cannot list the model's methods"
    ]
