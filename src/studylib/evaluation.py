"""Score a dataset under one pruning configuration: one result row per question.

This is the inner loop of every experiment: images are encoded once (the adapter caches
them), the pruner selects per batch, and one prefill forward scores the batch.  The rows
carry everything the metrics need, plus per-image diagnostics of the kept tokens.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from studylib.data.records import Dataset, Question
from studylib.metrics import attention_entropy, effective_rank
from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter, ScoreResult
from studylib.models.visual_tokens import QueryContext, VisualTokens

NEEDS_QUERY = {"cdpruner", "idselect"}


def kept_token_diagnostics(tokens: VisualTokens, kept: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image: effective rank of the kept tokens' pre-projector features (raw matrix,
    Roy & Vetterli) and the normalised entropy of the [CLS] attention renormalised over the
    kept tokens (0 = all mass on one token, 1 = uniform)."""
    kept = kept.to(tokens.features.device)
    index = kept.unsqueeze(-1).expand(-1, -1, tokens.features.shape[-1])
    features = tokens.features.gather(1, index).double().cpu().numpy()
    attention = tokens.cls_attention.gather(1, kept).double().cpu().numpy()
    erank = np.atleast_1d(effective_rank(features))
    entropy = np.atleast_1d(attention_entropy(attention, normalize=True)) if kept.shape[1] > 1 else np.zeros(len(kept))
    return erank, entropy


def _rows(batch: list[Question], scores: ScoreResult, erank, entropy, spec: str, k: int) -> list[dict]:
    rows = []
    for i, q in enumerate(batch):
        labels = scores.labels[i]
        probs = scores.probs[i, : len(labels)]
        prediction = labels[int(np.argmax(probs))]
        rows.append({
            "qid": q.qid, "image": q.image_key, "task": q.task, "split": q.split,
            "label": q.answer, "choices": list(labels), "probs": probs.tolist(),
            "logits": scores.logits[i, : len(labels)].tolist(),
            "prediction": prediction, "confidence": float(probs.max()), "correct": prediction == q.answer,
            "verbalizer_mass": float(scores.verbalizer_mass[i]), "top_token": scores.top_token[i],
            "pruner": spec, "k": k, "kept": scores.kept[i].tolist(),
            "erank_kept": float(erank[i]), "entropy_kept": float(entropy[i]),
        })
    return rows


def batches(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def score_dataset(adapter: LlavaAdapter, dataset: Dataset, pruner, k: int, batch_size: int = 64,
                  progress: bool = True) -> pd.DataFrame:
    """Score every yes/no or multiple-choice question of ``dataset`` with ``pruner`` at budget
    ``k``; returns one row per question (see :func:`_rows` for the columns)."""
    questions = [q for q in dataset.questions if q.task in ("yesno", "mc")]
    if not questions:
        raise ValueError(f"dataset {dataset.name!r} has no yes/no or multiple-choice questions to score")
    needs_query = getattr(pruner, "name", "") in NEEDS_QUERY
    rows: list[dict] = []
    bar = tqdm(total=len(questions), desc=f"{dataset.name} {pruner}@{k}", disable=not progress, leave=False)
    for batch in batches(questions, batch_size):
        keys = [q.image_key for q in batch]
        tokens = adapter.encode([dataset.load_image(key) for key in keys], keys)
        texts = [prompts.build_prompt(q) for q in batch]
        query = adapter.query_context([q.text for q in batch], texts, tokens) if needs_query else None
        scores = adapter.score_pruned(texts, tokens, pruner, k, [prompts.verbalizer(q) for q in batch], query)
        erank, entropy = kept_token_diagnostics(tokens, scores.kept)
        rows += _rows(batch, scores, erank, entropy, str(pruner), k)
        bar.update(len(batch))
    bar.close()
    return pd.DataFrame(rows)


__all__ = ["QueryContext", "kept_token_diagnostics", "score_dataset"]
