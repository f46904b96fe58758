"""Generate a local spoken-digit audio folder with espeak-ng: "zero".."nine" said by synthetic speakers.

    apt-get install -y espeak-ng
    .venv/bin/python -m tasks.speech.make_digits                # -> data/spoken_digits (~1200 files)
    .venv/bin/python -m tasks.speech.make_digits --speakers 60 --takes 4 --out data/digits60

A speaker is one espeak-ng accent (en-us, en-gb-scotland, ...) with one voice variant (m1..m7,
f1..f5) and its own base pitch and speed; each take jitters pitch and speed, starts after a
random silence and gets white noise at a random SNR. Files follow the audiofolder and
free-spoken-digit conventions, ``<out>/<word>/<digit>_<speaker>_<take>.wav`` (22.05 kHz, 16-bit),
so the task splits by speaker and resamples them.
"""

from __future__ import annotations

import argparse
import io
import itertools
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")


def speak(word: str, voice: str, pitch: int, speed: int) -> tuple[np.ndarray, int]:
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout", word],
        check=True, capture_output=True,
    ).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return audio, rate


def render(word: str, voice: str, pitch: int, speed: int, lead_s: float, snr_db: float, seed: int) -> tuple[np.ndarray, int]:
    audio, rate = speak(word, voice, pitch, speed)
    rng = np.random.default_rng(seed)
    audio = np.concatenate([np.zeros(int(lead_s * rate), np.float32), audio, np.zeros(int(0.05 * rate), np.float32)])
    power = float(np.mean(audio**2)) or 1e-8
    audio = audio + rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), audio.shape).astype(np.float32)
    return audio / max(1.0, float(np.abs(audio).max()) / 0.95), rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/spoken_digits", help="output folder (replaced)")
    parser.add_argument("--speakers", type=int, default=40, help=f"at most {len(ACCENTS) * len(VARIANTS)}")
    parser.add_argument("--takes", type=int, default=3, help="utterances per speaker and digit")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        parser.error("espeak-ng is not installed (Debian/Ubuntu: apt-get install -y espeak-ng)")
    rng = np.random.default_rng(args.seed)
    pool = list(itertools.product(ACCENTS, VARIANTS))
    if not 3 <= args.speakers <= len(pool):
        parser.error(f"--speakers must be between 3 and {len(pool)}")
    speakers = [pool[i] for i in rng.choice(len(pool), args.speakers, replace=False)]
    jobs = []
    for accent, variant in speakers:
        base_pitch, base_speed = int(rng.integers(25, 75)), int(rng.integers(130, 190))
        for digit, word in enumerate(WORDS):
            for take in range(args.takes):
                pitch = int(np.clip(base_pitch + rng.integers(-8, 9), 0, 99))
                speed = int(base_speed + rng.integers(-15, 16))
                name = f"{word}/{digit}_{accent}+{variant}_{take}.wav"
                jobs.append((name, word, f"{accent}+{variant}", pitch, speed, rng.uniform(0, 0.15), rng.uniform(15, 35), int(rng.integers(2**31))))
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    for word in WORDS:
        (out / word).mkdir(parents=True)

    def write(job):
        name, *spoken = job
        audio, rate = render(*spoken)
        sf.write(out / name, audio, rate, subtype="PCM_16")

    with ThreadPoolExecutor(max_workers=4) as ex:
        list(ex.map(write, jobs))
    print(f"wrote {len(jobs)} utterances ({args.speakers} speakers x {len(WORDS)} digits x {args.takes} takes) to {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
