"""The ``snr`` perturbation: noise mixed into the *waveform*, before features, at a signal-to-noise ratio.

White Gaussian noise by default; with ``--noise-dir``, a random window of a random recording of
that folder, the way keyword-spotting pipelines mix Speech Commands' ``_background_noise_``. Per
utterance the noise is scaled so that 10 log10(P_signal / P_noise) over the utterance's own
samples (padding excluded, and left silent) is exactly the level in dB; +inf dB adds nothing.
Mixtures stay float (no int16 rounding or clipping), so the measured SNR is the asked one.
"""

from __future__ import annotations

import torch

from benchmark.config import ConfigError
from benchmark.perturb import Context, perturbation
from tasks.speech.silence import background_recordings


def _noise(n: int, g: torch.Generator, ctx: Context) -> torch.Tensor:
    if ctx.noise_dir is None:
        return torch.randn(n, generator=g)
    if "recordings" not in ctx.cache:
        o = ctx.task.options
        if not ctx.noise_dir.is_dir():
            raise ConfigError(f"--noise-dir '{ctx.noise_dir}' is not a folder")
        samples = int(round(o.duration_s * o.sample_rate))
        ctx.cache["recordings"] = [torch.from_numpy(r) for r in background_recordings(ctx.noise_dir, o.sample_rate, o.resample, samples)]
    recordings = ctx.cache["recordings"]
    audio = recordings[int(torch.randint(len(recordings), (), generator=g))]
    start = int(torch.randint(len(audio) - n + 1, (), generator=g))
    return audio[start : start + n].double()


def mix(wave: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``wave`` plus ``noise`` scaled to ``snr_db`` below its power (both 1-D, same length); silence stays silent."""
    signal = wave.double()
    p_signal, p_noise = signal.square().mean(), noise.double().square().mean()
    if p_signal == 0 or p_noise == 0:
        return signal
    return signal + noise.double() * torch.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))


@perturbation("snr", "raw", "dB", "noise mixed into each utterance's waveform at this signal-to-noise ratio (white, or "
              "--noise-dir recordings), before features", clean=float("inf"))  # fmt: skip
def snr(item, level: float, gens, ctx: Context):
    waves, samples, targets = item
    out = waves.double()
    for i, g in enumerate(gens):
        n = int(samples[i])
        out[i, :n] = mix(waves[i, :n], _noise(n, g, ctx), level)
    return out.float(), samples, targets
