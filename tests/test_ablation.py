"""The cell design space: each variant against its family's vanilla, like for like, on a tiny store of known numbers."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from scipy import stats

from benchmark import record
from benchmark.decide.ablation import Ablation, ablations
from benchmark.record import RunKind, Tag
from benchmark.report import build_report
from benchmark.scales import RATIO

# model -> (cell, layers, bidirectional), as the runs' tags record them
SHAPES = {
    "lstm-peep": ("lstm-peep", 1, False), "lstm": ("lstm", 1, False), "cifg": ("cifg", 1, False),
    "gru": ("gru", 1, False), "mgu": ("mgu", 1, False), "bilstm": ("lstm", 1, True), "rnn": ("rnn", 1, False),
    "gru-2l": ("gru", 2, False), "mingru-2l": ("mingru", 2, False), "lstm-2l": ("lstm", 2, False),
    "minlstm-2l": ("minlstm", 2, False), "minlstm": ("minlstm", 1, False), "gru-rb-bi": ("gru-rb", 1, True),
}  # fmt: skip


def test_each_variant_gets_its_familys_vanilla_of_the_same_structure():
    found = {a.variant: a for a in ablations(SHAPES)}
    # Greff's V is the LSTM baseline where it ran, so torch's LSTM (NP) is one of its variants
    assert found["lstm"] == Ablation("lstm", "lstm-peep", "lstm", 1, False)
    assert found["cifg"].vanilla == "lstm-peep" and found["minlstm"].vanilla == "lstm-peep"
    assert found["mgu"] == Ablation("mgu", "gru", "gru", 1, False)
    # two layers: no lstm-peep there, so torch's LSTM is the vanilla; minGRU's is the 2-layer GRU
    assert found["minlstm-2l"] == Ablation("minlstm-2l", "lstm-2l", "lstm", 2, False)
    assert found["mingru-2l"] == Ablation("mingru-2l", "gru-2l", "gru", 2, False)
    # no vanilla of its structure ran (bigru), a vanilla itself, another family's vanilla: not compared
    assert set(found) == {"lstm", "cifg", "minlstm", "mgu", "minlstm-2l", "mingru-2l"}
    assert ablations({"lstm": ("lstm", 1, False), "gru": ("gru", 1, False)}) == []  # GRU vs LSTM is matched's question
    assert ablations({"x": ("not-installed", 1, False), "gru": ("gru", 1, False)}) == []


# test mse per seed: cifg clearly worse than V on every seed, NP within 1 % of V, mgu noisy around gru;
# minGRU-2l clearly better than GRU-2l
VALUES = {
    "lstm-peep": [0.10, 0.12, 0.11], "lstm": [0.1005, 0.1198, 0.1104], "cifg": [0.20, 0.25, 0.21],
    "gru": [0.10, 0.12, 0.11], "mgu": [0.05, 0.20, 0.08],
    "gru-2l": [0.10, 0.12, 0.11], "mingru-2l": [0.05, 0.061, 0.054],
}  # fmt: skip


def _fake_run(mlflow: MlflowClient, exp: str, model: str, seed: int, value: float) -> None:
    """An ordinary finished run as ``benchmark.record`` says a run records itself (only what the report reads)."""
    cell, layers, bi = SHAPES[model]
    tags = {Tag.TASK: "adding", Tag.TASK_LABEL: "adding[seq_len=8]", Tag.MODEL: model, Tag.CELL: cell, Tag.LAYERS: str(layers),
            Tag.BIDIRECTIONAL: record.flag(bi), Tag.SEED: str(seed), Tag.MAIN_METRIC: "mse", Tag.HIGHER_IS_BETTER: "false",
            record.metric_scale("mse"): RATIO.name, Tag.PARAM_COUNT: "1000", Tag.HIDDEN: "8"}  # fmt: skip
    run = record.create_run(mlflow, exp, RunKind.RUN, f"{model} {seed}", tags)
    mlflow.log_metric(run, record.on_test("mse"), value)
    mlflow.log_metric(run, record.baseline("mse"), 1 / 6)
    record.end_run(mlflow, run, record.FINISHED)


@pytest.fixture
def store(mlflow_uri):
    mlflow = MlflowClient(mlflow_uri)
    exp = mlflow.create_experiment("odyssey")
    for model, values in VALUES.items():
        for seed, value in enumerate(values):
            _fake_run(mlflow, exp, model, seed, value)
    return mlflow_uri


def test_the_report_ranks_each_variant_against_its_vanilla(store, tmp_path):
    out = tmp_path / "report"
    build_report(store, "odyssey", out)
    decisions = pd.read_csv(out / "decisions.csv")
    variants = decisions[decisions.question == "main metric against the family's vanilla cell"].set_index("pair")
    assert sorted(variants.index) == ["cifg vs lstm-peep", "lstm vs lstm-peep", "mgu vs gru", "mingru-2l vs gru-2l"]
    assert variants.loc["cifg vs lstm-peep", "verdict"] == "b better"  # the vanilla: removing the forget gate hurts
    assert variants.loc["lstm vs lstm-peep", "verdict"] == "equivalent"  # peepholes: no difference within ±10 %
    assert variants.loc["mgu vs gru", "verdict"] == "undecided"
    assert variants.loc["mingru-2l vs gru-2l", "verdict"] == "a better"
    ratio = pd.Series(VALUES["cifg"]) / pd.Series(VALUES["lstm-peep"])
    assert variants.loc["cifg vs lstm-peep", "estimate"] == pytest.approx(stats.gmean(ratio))  # ratio of geometric means
    assert (variants.family == 4).all()  # Holm over the setting's variants
    md = (out / "report.md").read_text()
    table = md.split("## Cell variants against their family's vanilla")[1].split("\n## ")[0]
    assert "| cifg | lstm-peep | 1 layer, unidirectional | **worse**: ratio" in table
    assert "| mingru-2l | gru-2l | 2 layers, unidirectional | better: ratio" in table
    verdicts = pd.read_csv(out / "verdicts.csv").set_index("question").answer
    gates = verdicts["Which gates and activations matter? (each cell variant against its family's vanilla)"]
    assert gates.startswith("The change hurts: cifg vs lstm-peep; the change helps: mingru-2l vs gru-2l; ")
    assert "makes no difference within the margin: lstm vs lstm-peep; undecided: mgu vs gru" in gates
    overall = pd.read_csv(out / "overall.csv")
    pooled = overall[overall.question.str.startswith("Which gates")]
    assert dict(zip(pooled.a, pooled.b)) == {"cifg": "lstm-peep", "lstm": "lstm-peep", "mgu": "gru", "mingru-2l": "gru-2l"}
