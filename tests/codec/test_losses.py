"""Codec losses and discriminator: the distances measure what they claim to."""

import math

import pytest
import torch

from after.codec.discriminator import MultiScaleSTFTDiscriminator
from after.codec.losses import (
    LogFrequencySpectralLoss,
    MultiResolutionSTFTLoss,
    a_weighting_fir,
    a_weighting_gain,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    latent_regularizer,
    regularizer_weight,
)

torch.set_num_threads(1)


def tone(freq: float, samples: int = 8192, rate: int = 22050, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(samples) / rate
    return (amplitude * torch.sin(2 * torch.pi * freq * t)).reshape(1, 1, -1)  # [1, 1, T]


def test_stft_loss_is_zero_on_identity_and_grows_with_the_error():
    loss = MultiResolutionSTFTLoss((512, 128, 32))
    target = tone(440.0) + 0.01 * torch.randn(1, 1, 8192)
    assert loss(target, target) == 0
    near, far = loss(target * 0.9, target), loss(target * 0.3, target)
    assert 0 < near < far
    assert loss(tone(445.0), tone(440.0)) < loss(tone(3000.0), tone(440.0))


def test_stft_loss_mean_over_resolutions_and_gradient():
    loss = MultiResolutionSTFTLoss((256, 64))
    prediction = torch.randn(2, 1, 4096, requires_grad=True)
    target = torch.randn(2, 1, 4096)
    per = loss.per_resolution(prediction, target)
    assert set(per) == {256, 64}
    value = loss(prediction, target)
    assert torch.isclose(value, (per[256] + per[64]) / 2)
    value.backward()
    assert torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0


def test_a_weighting_follows_the_standard_curve():
    gains_db = 20 * torch.log10(a_weighting_gain(torch.tensor([100.0, 1000.0, 10000.0])))
    assert torch.allclose(gains_db, torch.tensor([-19.1, 0.0, -2.5]), atol=0.2)
    taps = a_weighting_fir(22050)
    response = torch.fft.rfft(taps, 4096).abs()
    freqs = torch.fft.rfftfreq(4096, 1 / 22050)
    at = lambda f: response[(freqs - f).abs().argmin()]  # noqa: E731
    assert at(60.0) < 0.2 * at(1000.0)  # bass is attenuated
    assert torch.isclose(at(1000.0), torch.tensor(1.0), atol=0.1)


def test_perceptual_loss_weighs_low_frequency_errors_less():
    plain, weighted = (
        MultiResolutionSTFTLoss((512, 128)),
        MultiResolutionSTFTLoss((512, 128), perceptual=True, sample_rate=22050),
    )
    target = tone(1000.0)
    low_error, mid_error = target + tone(50.0, amplitude=0.2), target + tone(2000.0, amplitude=0.2)
    ratio_plain = plain(low_error, target) / plain(mid_error, target)
    ratio_weighted = weighted(low_error, target) / weighted(mid_error, target)
    assert ratio_weighted < ratio_plain


def band_limited(noise: torch.Tensor, low_hz: float, high_hz: float, gain: float, rate: int = 22050):
    """``noise`` [1, 1, T] with the band [low_hz, high_hz) scaled by ``gain``."""
    spectrum = torch.fft.rfft(noise)
    freqs = torch.fft.rfftfreq(noise.shape[-1], 1 / rate)
    spectrum[..., (freqs >= low_hz) & (freqs < high_hz)] *= gain
    return torch.fft.irfft(spectrum, n=noise.shape[-1])


def test_log_frequency_loss_weighs_the_bass_octaves_like_the_treble_octaves():
    """Losing 10 dB over two octaves of bass (40-160 Hz) costs the log-frequency loss a large share
    of what losing two octaves of treble (2.56-10.24 kHz) costs; the linear STFT loss and, far more,
    its A-weighted form barely see the bass."""
    torch.manual_seed(0)
    target = torch.randn(1, 1, 3 * 22050)
    no_bass, no_treble = band_limited(target, 40, 160, 0.3), band_limited(target, 2560, 10240, 0.3)
    log_frequency = LogFrequencySpectralLoss(sample_rate=22050)
    linear = MultiResolutionSTFTLoss((2048, 512, 128))
    weighted = MultiResolutionSTFTLoss((2048, 512, 128), perceptual=True, sample_rate=22050)
    ratios = {
        name: (loss(no_bass, target) / loss(no_treble, target)).item()
        for name, loss in (("log", log_frequency), ("linear", linear), ("weighted", weighted))
    }
    assert ratios["log"] > 0.3 and ratios["log"] > 4 * ratios["linear"] > 4 * ratios["weighted"], ratios
    assert log_frequency(target, target) == 0


def test_log_frequency_loss_tells_a_semitone_in_the_bass_and_has_gradients():
    """A bass line a semitone off (55 vs 58.3 Hz) is far from the target, an octave error farther
    still; an exact copy is at zero, and the gradient reaches every input sample."""
    loss = LogFrequencySpectralLoss(sample_rate=22050)
    target = tone(55.0, samples=22050)
    semitone, octave = loss(tone(58.27, samples=22050), target), loss(tone(110.0, samples=22050), target)
    assert loss(target, target) == 0 < loss(0.5 * target, target) < semitone < octave
    prediction = tone(58.27, samples=22050).requires_grad_(True)
    loss(prediction, target).backward()
    assert torch.isfinite(prediction.grad).all() and (prediction.grad != 0).float().mean() > 0.99
    with pytest.raises(ValueError, match="needs more than 4096 samples"):
        loss(target[..., :4096], target[..., :4096])


def test_latent_regulariser_and_its_warmup():
    inside, edge = latent_regularizer(torch.zeros(1, 4, 8)), latent_regularizer(torch.full((1, 4, 8), 3.0))
    assert inside < 0.06 and torch.isclose(edge, torch.tensor(1.0))  # exp(-3) inside, 1 at the bound
    assert latent_regularizer(torch.full((1, 4, 8), 5.0)) > 2.0
    assert regularizer_weight(0, 0.1, 100) == 0.0
    assert regularizer_weight(50, 0.1, 100) == 0.05
    assert regularizer_weight(500, 0.1, 100) == 0.1


def test_hinge_and_feature_matching():
    real, fake = [torch.full((2, 1, 3, 3), 2.0)], [torch.full((2, 1, 3, 3), -2.0)]
    assert hinge_discriminator_loss(real, fake) == 0  # both beyond the margin
    assert hinge_discriminator_loss(fake, real) == 6
    assert hinge_generator_loss(fake) == 2
    features = [[torch.ones(2, 4, 3, 3), torch.full((2, 4, 3, 3), 2.0)]]
    assert feature_matching_loss(features, features) == 0
    off = [[torch.ones(2, 4, 3, 3) * 1.5, torch.full((2, 4, 3, 3), 2.0)]]
    assert torch.isclose(feature_matching_loss(features, off), torch.tensor(0.25))


def test_discriminator_learns_to_tell_tones_from_noise():
    torch.manual_seed(0)
    discriminator = MultiScaleSTFTDiscriminator((128, 512), channels=8)
    optimizer = torch.optim.Adam(discriminator.parameters(), 1e-2)
    real = torch.cat([tone(f, 4096) for f in (220.0, 330.0, 440.0, 660.0)])  # [4, 1, T]
    fake = 0.3 * torch.randn(4, 1, 4096)
    logits, features = discriminator(real)
    assert len(logits) == 2 and len(features[0]) == 5
    start = hinge_discriminator_loss(discriminator(real)[0], discriminator(fake)[0]).item()
    for _ in range(30):
        loss = hinge_discriminator_loss(discriminator(real)[0], discriminator(fake)[0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * start
    with torch.no_grad():
        real_score = torch.stack([x.mean() for x in discriminator(real)[0]]).mean()
        fake_score = torch.stack([x.mean() for x in discriminator(0.3 * torch.randn(4, 1, 4096))[0]]).mean()
    assert real_score > fake_score  # also on noise it has not seen


def test_spectral_convergence_tells_a_partial_from_its_quarter_tone_neighbours():
    """At its FFT sizes (8192, 4096) the loss of a 440-Hz tone against itself is 0, and a tone a
    quarter tone off (433.7 or 446.4 Hz) or on the frame-rate grid (452.2 Hz) scores worse than
    silence (1): a wrong partial is never rewarded. With 2048 added, the quarter-tone neighbours
    would score 0.9, better than silence."""
    from after.codec.losses import SpectralConvergenceLoss

    sample_rate = 22050
    t = torch.arange(3 * sample_rate) / sample_rate

    def tone(hz: float) -> torch.Tensor:
        return (0.2 * torch.sin(2 * math.pi * hz * t)).view(1, 1, -1)

    loss = SpectralConvergenceLoss()
    assert loss.fft_sizes == (8192, 4096)
    assert loss(tone(440.0), tone(440.0)).item() < 1e-4
    assert loss(torch.zeros(1, 1, t.numel()), tone(440.0)).item() == pytest.approx(1.0, abs=1e-3)
    for wrong in (433.7, 446.4, 452.2):
        assert loss(tone(wrong), tone(440.0)).item() > 1.05, wrong
    with_2048 = SpectralConvergenceLoss((8192, 4096, 2048))
    assert with_2048(tone(446.4), tone(440.0)).item() < 1.0
    with pytest.raises(ValueError, match="differ"):
        loss(tone(440.0)[..., :100], tone(440.0))


def test_spectral_convergence_against_what_is_not_played_yet():
    """With ``present`` the target is only what ``present`` lacks: a chord of 440 + 660 Hz of which
    660 Hz is already played asks for 440 Hz alone (440 scores ~0, 660 worse than silence, the
    chord no better than silence), and no gradient reaches ``present``."""
    from after.codec.losses import SpectralConvergenceLoss

    sample_rate = 22050
    t = torch.arange(3 * sample_rate) / sample_rate

    def tone(hz: float) -> torch.Tensor:
        return (0.2 * torch.sin(2 * math.pi * hz * t)).view(1, 1, -1)

    loss = SpectralConvergenceLoss()
    chord = tone(440.0) + tone(660.0)
    played = tone(660.0).requires_grad_(True)
    assert loss(tone(440.0), chord, played).item() < 0.05
    assert loss(torch.zeros_like(chord), chord, played).item() == pytest.approx(1.0, abs=1e-3)
    assert loss(tone(660.0), chord, played).item() > 1.2
    assert loss(chord, chord, played).item() > 0.99  # no better than silence
    assert loss(chord, chord).item() < 1e-4  # without present the chord is the answer
    guess = tone(445.0).requires_grad_(True)
    loss(guess, chord, played).backward()
    assert guess.grad is not None and played.grad is None
    with pytest.raises(ValueError, match="present"):
        loss(chord, chord, played[..., :100])
