"""A text classifier: a pretrained transformer encoder, mean pooling and a linear head.

Saved in Hugging Face layout, so the encoder folder loads anywhere with ``AutoModel``::

    config.json, model.safetensors     the encoder (LoRA adapters already merged in)
    tokenizer.json, tokenizer_config.json, vocab.txt, ...
    head.safetensors                   the classification head
    labels.json                        the label of each output, in order

Mean pooling rather than the [CLS] token because sentence encoders such as all-MiniLM-L6-v2
were trained to be pooled that way, which makes a good start for small data sets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from models.errors import BrokenModelError, ModelNotFoundError, one_line
from models.tasks import LABELS_FILE

# Loading reads local folders only; a model id must already be in the local Hugging Face cache.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HEAD_FILE = "head.safetensors"


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class TextClassifier(nn.Module):
    def __init__(self, encoder: PreTrainedModel | nn.Module, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(input_ids, attention_mask)))


def load_encoder(
    name_or_path: str | Path, strict: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A pretrained encoder and its tokenizer, from a folder or a locally cached model id.

    ``strict``: every weight the config calls for is in the files and every weight in the
    files has a place, else BrokenModelError (a base encoder may lack a head it never had;
    a folder this project saved may not)."""
    try:
        encoder, loading = AutoModel.from_pretrained(
            str(name_or_path),
            local_files_only=True,
            use_safetensors=True,
            output_loading_info=True,
        )
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=True)
    except OSError as error:
        raise ModelNotFoundError(
            f"cannot load encoder {name_or_path} from local files "
            f"(a folder, or a model id in the Hugging Face cache): {error}"
        ) from None
    except Exception as error:  # truncated weights, shapes the config does not give, ...
        if not strict:
            raise
        raise BrokenModelError(
            f"{name_or_path}: its weights do not load ({one_line(error)})"
        ) from error
    unmatched = {kind: keys for kind, keys in loading.items() if keys and kind != "error_msgs"}
    if strict and unmatched:
        described = "; ".join(
            f"{len(keys)} {kind.replace('_', ' ')}" for kind, keys in unmatched.items()
        )
        raise BrokenModelError(
            f"{name_or_path}: its config does not match its weights ({described})"
        )
    return encoder, tokenizer


def save_text_classifier(
    model: TextClassifier, tokenizer: PreTrainedTokenizerBase, labels: list[str], folder: Path
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, folder / HEAD_FILE)
    (folder / LABELS_FILE).write_text(json.dumps(labels, indent=1), encoding="utf-8")


def load_text_classifier(
    folder: Path,
) -> tuple[TextClassifier, PreTrainedTokenizerBase, list[str]]:
    labels = json.loads((folder / LABELS_FILE).read_text(encoding="utf-8"))
    encoder, tokenizer = load_encoder(folder, strict=True)
    model = TextClassifier(encoder, len(labels))
    model.head.load_state_dict(load_file(folder / HEAD_FILE))
    return model.eval(), tokenizer, labels
