"""Why a model said what it said: attributions of one prediction to its inputs.

    from models.serving.explanations import Explainer, Explanation, explain_texts, explain_readings

    Explainer(model_dir: Path, steps: int = 32, max_seq_length: int = 128)
        .explain(inputs: Sequence[ModelInput], target: str | None = None) -> list[Explanation]

    explain_texts(model: TextClassifier, tokenizer, labels: list[str], texts: Sequence[str],
                  target: str | None = None, steps: int = 32, max_seq_length: int = 128)
        -> list[Explanation]
    explain_readings(model: SensorModel, readings: Sequence[SensorReading])
        -> list[Explanation]

Text (news, tickets): Integrated Gradients (Sundararajan et al. 2017) through Captum's
``LayerIntegratedGradients`` over the word-embedding layer, from a baseline of pad tokens
(the special tokens kept) to the text, toward the probability of the predicted label (or of
``target``). Sub-word pieces are summed back into the words of the text. IG's completeness
axiom says the attributions add up to ``p(text) - p(baseline)``; ``delta`` is how far they
miss, so a run with too few ``steps`` shows itself (|delta| of a few hundredths or less is a
faithful run). The model runs in fp32 here whatever the serving precision: gradients through
int8 layers do not exist.

Sensors: exact Shapley values (Captum's ``ShapleyValues``, every ordering of the five input
columns) of the failure probability, from the model's reference reading (medians of its
training rows) to the reading; the machine type is held as it is. Each attribution is in
probability units, beside the column's value and reference in the column's own unit, and
they add up exactly to ``p(reading) - p(reference)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from config.settings import DomainName
from models.base import ModelInput, SensorReading
from models.data import SENSOR_COLUMNS
from models.sensor_model import SensorModel, features, load_sensor_model
from models.tasks import task_of
from models.text_model import TextClassifier, load_text_classifier

SENSOR_INPUTS: tuple[str, ...] = tuple(SENSOR_COLUMNS)
UNITS = {"air_temp_k": "K", "process_temp_k": "K", "rpm": "rpm", "torque_nm": "Nm",
         "tool_wear_min": "min"}  # fmt: skip


@dataclass(frozen=True)
class Attribution:
    """One input's share of a prediction: a word of a text, or a column of a reading."""

    feature: str  # the word, or the column name (air_temp_k, ...)
    score: float  # toward the explained label's probability; negative: against it
    value: float | None = None  # sensors: the reading's value, in ``unit``
    reference: float | None = None  # sensors: the reference value it is compared with
    unit: str = ""
    span: tuple[int, int] | None = None  # text: the word's character offsets in the text


@dataclass(frozen=True)
class Explanation:
    """The attributions of one prediction, in input order."""

    label: str  # the explained label (news: a sentiment; tickets: an intent; sensors: failure)
    probability: float  # the model's probability of ``label``
    method: str  # "integrated-gradients" or "shapley"
    attributions: list[Attribution]
    delta: float  # completeness gap: sum(scores) - (p(input) - p(baseline))
    steps: int | None = None  # integration steps (integrated gradients)
    extra: dict[str, Any] = field(default_factory=dict)

    def top(self, k: int = 3) -> tuple[list[Attribution], list[Attribution]]:
        """The ``k`` inputs that pushed most toward the label and the ``k`` most against."""
        ranked = sorted(self.attributions, key=lambda a: a.score, reverse=True)
        toward = [a for a in ranked if a.score > 0][:k]
        against = [a for a in reversed(ranked) if a.score < 0][:k]
        return toward, against

    def short(self, k: int = 3) -> str:
        """One line for an alert: ``+profit +soars -losses`` (words), or columns with values."""
        toward, against = self.top(k)

        def name(a: Attribution) -> str:
            return a.feature if a.value is None else f"{a.feature}={a.value:g}{a.unit}"

        return " ".join([f"+{name(a)}" for a in toward] + [f"-{name(a)}" for a in against])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _words(
    tokenizer: PreTrainedTokenizerBase, text: str, encoding: Any, scores: np.ndarray
) -> list[Attribution]:
    """Token scores summed over the pieces of each word; words in text order."""
    word_ids = encoding.word_ids(0)
    totals: dict[int, float] = {}
    spans: dict[int, tuple[int, int]] = {}
    for position, word in enumerate(word_ids):
        if word is None:
            continue
        totals[word] = totals.get(word, 0.0) + float(scores[position])
        start, end = encoding.token_to_chars(0, position)
        first, last = spans.get(word, (start, end))
        spans[word] = (min(first, start), max(last, end))
    return [
        Attribution(text[spans[w][0] : spans[w][1]], totals[w], span=spans[w])
        for w in sorted(totals)
    ]


def explain_texts(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    labels: list[str],
    texts: Sequence[str],
    target: str | None = None,
    steps: int = 32,
    max_seq_length: int = 128,
) -> list[Explanation]:
    """Integrated-gradients explanations of ``texts`` (one per text, in order) toward the
    predicted label, or toward ``target`` (ValueError when it is not one of ``labels``).
    Cost: about ``steps`` forward and backward passes of one text each, on the CPU."""
    from captum.attr import LayerIntegratedGradients

    if target is not None and target not in labels:
        raise ValueError(f"unknown label {target!r} (the model's: {', '.join(labels)})")
    model = model.eval()
    device = next(model.parameters()).device

    def probabilities(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(input_ids, attention_mask).float(), dim=-1)

    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token to build the baseline from")
    integrated = LayerIntegratedGradients(probabilities, model.encoder.get_input_embeddings())
    explanations = []
    for text in texts:
        encoding = tokenizer(
            text,
            truncation=True,
            max_length=max_seq_length,
            return_tensors="pt",
            return_special_tokens_mask=True,
        )
        ids, mask = encoding["input_ids"].to(device), encoding["attention_mask"].to(device)
        # The added [CLS]/[SEP] stay as they are; every token of the text becomes padding
        # (an [UNK] in the text too, so that it is attributed like any word).
        added = encoding["special_tokens_mask"].to(device).bool()
        baseline = torch.where(added, ids, torch.full_like(ids, tokenizer.pad_token_id))
        with torch.no_grad():
            predicted = probabilities(ids, mask)[0]
        index = labels.index(target) if target is not None else int(predicted.argmax())
        attributions, delta = integrated.attribute(
            ids,
            baselines=baseline,
            target=index,
            additional_forward_args=(mask,),
            n_steps=steps,
            internal_batch_size=steps,
            return_convergence_delta=True,
        )
        scores = attributions.sum(-1)[0].detach().cpu().numpy()
        explanations.append(
            Explanation(
                label=labels[index],
                probability=float(predicted[index]),
                method="integrated-gradients",
                attributions=_words(tokenizer, text, encoding, scores),
                delta=float(delta[0]),
                steps=steps,
            )
        )
    return explanations


def explain_readings(model: SensorModel, readings: Sequence[SensorReading]) -> list[Explanation]:
    """Exact Shapley values of P(failure) over the five input columns of each reading,
    against ``model.reference``; one explanation per reading, in order."""
    from captum.attr import ShapleyValues

    explanations = []
    for reading in readings:

        def failure(columns: torch.Tensor, reading: SensorReading = reading) -> torch.Tensor:
            rows: list[SensorReading] = [
                {**reading, **dict(zip(SENSOR_INPUTS, map(float, row), strict=True))}  # type: ignore[typeddict-item]
                for row in columns.tolist()
            ]
            return torch.from_numpy(model.failure_probability(features(rows)))

        values = torch.tensor([[reading[c] for c in SENSOR_INPUTS]], dtype=torch.float64)
        reference = torch.tensor([[model.reference[c] for c in SENSOR_INPUTS]], dtype=torch.float64)
        # All 120 orderings of the 5 columns evaluated in one batch of the trees.
        shapley = ShapleyValues(failure).attribute(
            values, baselines=reference, perturbations_per_eval=len(SENSOR_INPUTS) * 120
        )[0]
        p, p_reference = failure(values)[0].item(), failure(reference)[0].item()
        explanations.append(
            Explanation(
                label="failure",
                probability=p,
                method="shapley",
                attributions=[
                    Attribution(c, float(s), float(values[0, i]), float(reference[0, i]), UNITS[c])
                    for i, (c, s) in enumerate(zip(SENSOR_INPUTS, shapley.tolist(), strict=True))
                ],
                delta=float(shapley.sum()) - (p - p_reference),
                extra={"reference_probability": p_reference},
            )
        )
    return explanations


class Explainer:
    """Explanations from one registered model version, loaded once in fp32.

    ``explain`` takes the domain's model inputs (texts, or readings for sensors) and returns
    one :class:`Explanation` each, in order; ``target`` (text domains) names another label
    to explain toward. Blocking: callers on an event loop run it in an executor."""

    def __init__(self, model_dir: Path, steps: int = 32, max_seq_length: int = 128) -> None:
        from models.registry import read_metadata

        metadata = read_metadata(model_dir)
        self.domain: DomainName = metadata["domain"]
        self.task = task_of(model_dir)
        self.version = Path(model_dir).name
        self.steps, self.max_seq_length = steps, max_seq_length
        if self.task == "defect":
            self.sensor_model = load_sensor_model(model_dir)
        else:
            self.model, self.tokenizer, self.labels = load_text_classifier(model_dir)

    def explain(self, inputs: Sequence[ModelInput], target: str | None = None) -> list[Explanation]:
        if self.task == "defect":
            if target not in (None, "failure"):
                raise ValueError("a defect model explains its failure probability only")
            return explain_readings(self.sensor_model, inputs)  # type: ignore[arg-type]
        return explain_texts(
            self.model,
            self.tokenizer,
            self.labels,
            inputs,  # type: ignore[arg-type]
            target,
            self.steps,
            self.max_seq_length,
        )
