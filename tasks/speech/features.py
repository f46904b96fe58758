"""Log-mel and MFCC features computed in torch, batched, on whatever device the waveforms are on.

The STFT is ``torch.stft``; the mel filterbank (``librosa.filters.mel``, Slaney-style) and the
DCT-II matrix (``scipy.fft.dct`` of the identity, orthonormal) come from maintained
implementations, are built once on the host and live as buffers, so ``.to(device)`` moves them.
With ``pad_mode="constant"`` and ``center=True`` the result equals
``librosa.feature.mfcc(S=librosa.power_to_db(melspectrogram(...), top_db=None))``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

AMIN = 1e-10  # librosa.power_to_db's floor: keeps log of silent frames finite


class FeatureExtractor(nn.Module):
    """(B, samples) float waveforms -> (B, frames, features) log-mel (dB) or MFCC."""

    def __init__(
        self,
        sample_rate: int,
        win_length: int,
        hop_length: int,
        n_mels: int,
        n_mfcc: int | None = None,
        fmin: float = 0.0,
        fmax: float | None = None,
    ):
        super().__init__()
        import librosa  # heavy (numba); only when features are actually built
        from scipy.fft import dct

        self.win_length, self.hop_length = win_length, hop_length
        self.n_fft = 1 << (win_length - 1).bit_length()  # next power of two: the usual FFT size
        self.n_mfcc = n_mfcc
        mel = librosa.filters.mel(sr=sample_rate, n_fft=self.n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        self.register_buffer("mel_fb", torch.from_numpy(mel.T.astype(np.float32)), persistent=False)  # (freqs, mels)
        if n_mfcc is not None:
            basis = dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[:n_mfcc]  # rows: cosine basis
            self.register_buffer("dct", torch.from_numpy(basis.T.astype(np.float32)), persistent=False)  # (mels, mfcc)

    @property
    def size(self) -> int:
        return self.n_mfcc if self.n_mfcc is not None else self.mel_fb.shape[1]

    def frames(self, samples: Tensor | int) -> Tensor | int:
        """Frames an utterance of ``samples`` samples yields (centred frames)."""
        return 1 + samples // self.hop_length

    def forward(self, waves: Tensor) -> Tensor:
        spec = torch.stft(
            waves.float(),
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # (B, freqs, frames)
        power = spec.real.square() + spec.imag.square()
        logmel = 10.0 * torch.log10(torch.clamp(power.transpose(1, 2) @ self.mel_fb, min=AMIN))  # (B, frames, mels)
        return logmel if self.n_mfcc is None else logmel @ self.dct


def valid_frames(lengths: Tensor, frames: int) -> Tensor:
    """(B, frames) bool mask of the frames inside each utterance."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def masked_moments(features: Tensor, mask: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of ``features`` over ``dims``, counting only masked-in frames."""
    m = mask[..., None].to(features.dtype)
    count = m.sum(dims, keepdim=True).clamp(min=1)
    mean = (features * m).sum(dims, keepdim=True) / count
    var = ((features - mean).square() * m).sum(dims, keepdim=True) / count
    return mean, var.sqrt().clamp(min=1e-5)


def spec_augment(
    features: Tensor,
    lengths: Tensor,
    generator: torch.Generator,
    time_masks: int,
    time_width: int,
    freq_masks: int,
    freq_width: int,
) -> Tensor:
    """SpecAugment's time and frequency masking (Park et al., 2019), per utterance, vectorised.

    Each mask has a width drawn from [0, width] and a start inside the utterance; masked
    values become 0, the mean once features are normalised.
    """
    B, T, F = features.shape
    device = features.device
    for n, width, size, limit, axis in (
        (time_masks, time_width, T, lengths, 1),
        (freq_masks, freq_width, F, torch.full((B,), F, device=device), 2),
    ):
        pos = torch.arange(size, device=device)[None, :]
        for _ in range(n):
            w = torch.randint(0, width + 1, (B,), generator=generator, device=device)
            room = (limit - w).clamp(min=1)
            start = (torch.rand(B, generator=generator, device=device) * room).long()
            hit = (pos >= start[:, None]) & (pos < (start + w)[:, None])  # (B, size)
            features = features.masked_fill(hit[:, :, None] if axis == 1 else hit[:, None, :], 0.0)
    return features
