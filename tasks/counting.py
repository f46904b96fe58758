"""Counting: is a string of the form a^n b^n? A test of what a cell can count, with variable lengths.

Weiss, Goldberg & Yahav (2018) showed that an LSTM can count with its cell state while a GRU's
bounded, interpolating state cannot do so exactly: this task asks the question directly.
Negatives are the hard ones, a^n b^m with |m - n| <= 2, so a model must compare the two counts.
"""

from __future__ import annotations

import torch
from pydantic import Field

from benchmark import metrics
from benchmark.task import Baseline, Batch, InputKind, Metric, OutputKind, TaskSpec, register_task
from tasks.synthetic import SyntheticOptions, SyntheticTask

PAD, A, B = 0, 1, 2


class CountingOptions(SyntheticOptions):
    seq_len: int = Field(60, ge=4, description="longest string (2n for the largest n)")


@register_task
class Counting(SyntheticTask):
    name = "anbn"
    version = "1"
    description = "counting: is the string a^n b^n, or a^n b^m with m = n±1..2? variable length (accuracy)"
    Options = CountingOptions
    label_options = ("seq_len",)

    @classmethod
    def smoke_options(cls, workdir) -> dict:
        return {**super().smoke_options(workdir), "seq_len": 12}

    def spec(self) -> TaskSpec:
        return TaskSpec(
            name=self.name,
            version=self.version,
            input_kind=InputKind.TOKENS,
            input_size=3,
            output_kind=OutputKind.SEQUENCE_CLASSIFICATION,
            num_outputs=2,
            loss=metrics.cross_entropy_loss,
            metrics=(Metric("accuracy", metrics.accuracy, higher_is_better=True),),
            main_metric="accuracy",
            baseline=Baseline("majority class", {"accuracy": 0.5}),
            padding_idx=PAD,
            extra={"seq_len": self.options.seq_len},
            length_fact="seq_len",
        )

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> Batch:
        T = self.options.seq_len
        count_a = torch.randint(1, T // 2 + 1, (n,), generator=generator, device=device)
        positive = torch.rand(n, generator=generator, device=device) < 0.5
        offset = torch.randint(1, 3, (n,), generator=generator, device=device)
        sign = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1, 1)
        count_b = torch.where(positive, count_a, count_a + sign * offset)
        count_b = torch.minimum(count_b.clamp(min=1), T - count_a)
        t = torch.arange(T, device=device)[None, :]
        a_end, b_end = count_a[:, None], (count_a + count_b)[:, None]
        inputs = torch.where(t < a_end, A, torch.where(t < b_end, B, PAD))
        # the label comes from the string itself (clamping can turn a negative into a positive)
        return Batch(inputs, (count_b == count_a).long(), count_a + count_b)
