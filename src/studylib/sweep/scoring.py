"""The one scoring path: questions x one pruner configuration -> result rows.

Yes/no and multiple-choice questions are scored by one prefill forward (first-token
probabilities over the answer verbalizer); caption questions are generated greedily
(``max_new_tokens``) and scored with CHAIR against the dataset's object sets.  Every row also
describes the visual tokens the LLM kept (``kept``, ``n_kept``, their effective rank and the
entropy of their [CLS] attention).

Row layout (one row per question; :data:`SCORED_COLUMNS` / :data:`CAPTION_COLUMNS`):

* scored: ``qid, image, task, split, label, choices, probs, logits, prediction, confidence,
  correct, verbalizer_mass, top_token`` then the kept-token columns;
* caption: ``qid, image, task, split, label`` (the reference caption), ``caption`` and its CHAIR
  counts ``n_mentions, n_hallucinated, hallucinated, n_gt, n_recalled, length, mentioned,
  hallucinated_objects`` (``None`` when the image has no ground-truth objects), then the
  kept-token columns;
* kept-token columns: ``pruner, k, kept, n_kept, erank_kept, entropy_kept``.

Scores that are not finite (NaN or infinite logits or probabilities: damaged weights, a dtype
that overflows) stop the sweep with :class:`NonFiniteScoresError` before the batch is stored
(:func:`check_finite_scores`).

Images are encoded in fixed groups of :data:`ENCODE_GROUP` (dataset order) the first time a
batch needs one (:class:`Encoder`), so the vision tower sees the same batches whatever was
already computed; the adapter's cache serves every later configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
import torch
from threadpoolctl import ThreadpoolController
from tqdm.auto import tqdm

from studylib.data.records import Dataset, Question
from studylib.metrics import attention_entropy, chair, chair_vocabulary, effective_rank
from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter, ScoreResult
from studylib.models.loading import weight_files
from studylib.pruners import Pruner
from studylib.tokens import QueryContext, RaggedTokens, VisualTokens

ENCODE_GROUP = 16
SCORED_TASKS = ("yesno", "mc")
CAPTION_TASK = "caption"
KEPT_COLUMNS = ["pruner", "k", "kept", "n_kept", "erank_kept", "entropy_kept"]
SCORED_COLUMNS = ["qid", "image", "task", "split", "label", "choices", "probs", "logits", "prediction",
                  "confidence", "correct", "verbalizer_mass", "top_token", *KEPT_COLUMNS]
CAPTION_COLUMNS = ["qid", "image", "task", "split", "label", "caption", "n_mentions", "n_hallucinated",
                   "hallucinated", "n_gt", "n_recalled", "length", "mentioned", "hallucinated_objects",
                   *KEPT_COLUMNS]
LIST_COLUMNS = ("choices", "probs", "logits", "kept", "mentioned", "hallucinated_objects")


@lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


def blas_threads(n: int):
    """Context manager limiting numpy's BLAS/LAPACK to ``n`` threads.  The per-image eigenvalue
    problems of the erank are tiny (at most 144 x 144 on the toy): a second BLAS thread only
    contends with torch's threads, and under contention makes them an order of magnitude
    slower (measured: 0.4 ms vs 14 ms per 96 x 96 ``eigvalsh`` on a loaded 2-core machine)."""
    return _blas_controller().limit(limits=n, user_api="blas")


class NonFiniteScoresError(ValueError):
    """The model gave NaN or infinite first-token scores; the batch is not stored."""


def check_finite_scores(adapter: LlavaAdapter, questions: Sequence[Question], scores: ScoreResult) -> None:
    """Refuse a batch whose verbalizer logits, probabilities or mass are not all finite (the
    NaN padding of rows with fewer options aside), naming the model's files and the questions."""
    bad = [q.qid for i, (q, labels) in enumerate(zip(questions, scores.labels))
           if not (np.isfinite(scores.probs[i, :len(labels)]).all() and np.isfinite(scores.logits[i, :len(labels)]).all()
                   and np.isfinite(scores.verbalizer_mass[i]))]
    if bad:
        source = getattr(adapter.model.config, "_name_or_path", "") or "in memory"
        overflow = "; or float16 overflows: use dtype='bfloat16'" if adapter.model.dtype == torch.float16 else ""
        raise NonFiniteScoresError(
            f"the model ({source}) gave NaN or infinite answer scores for {len(bad)} of {len(questions)} question(s) "
            f"(e.g. {bad[:3]}); nothing of this batch is stored. {weight_files(source).capitalize()} may be damaged: "
            f"re-download or re-copy the checkpoint{overflow}")


def kept_token_diagnostics(tokens: VisualTokens, kept: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image: effective rank of the kept tokens' pre-projector features (raw matrix,
    Roy & Vetterli) and the normalised entropy of the [CLS] attention renormalised over the
    kept tokens (0 = all mass on one token, 1 = uniform).

    Rows of one image with the same kept tokens (the questions about an image under a pruner
    that ignores the question) are computed once: the SVD dominates a toy batch's cost."""
    kept = kept.to(tokens.features.device)
    keys = [(tokens.image_keys[i] if tokens.image_keys else i, kept[i].cpu().numpy().tobytes()) for i in range(len(kept))]
    first: dict = {}
    slot = np.array([first.setdefault(key, len(first)) for key in keys])
    rows = torch.tensor([keys.index(key) for key in first], device=kept.device)
    unique = kept[rows]
    index = unique.unsqueeze(-1).expand(-1, -1, tokens.features.shape[-1])
    features = tokens.features[rows].gather(1, index).double().cpu().numpy()
    attention = tokens.cls_attention[rows].gather(1, unique).double().cpu().numpy()
    with blas_threads(1):
        erank = np.atleast_1d(effective_rank(features))
    entropy = (np.atleast_1d(attention_entropy(attention, normalize=True)) if kept.shape[1] > 1
               else np.zeros(len(unique)))
    return erank[slot], entropy[slot]


class Encoder:
    """Encodes a dataset's images in fixed groups of :data:`ENCODE_GROUP` (dataset order) the
    first time a batch needs one of them; later requests are served by the adapter's cache."""

    def __init__(self, adapter: LlavaAdapter, dataset: Dataset, image_order: Sequence[str]):
        self.adapter, self.dataset = adapter, dataset
        self.group_of = {key: i // ENCODE_GROUP for i, key in enumerate(image_order)}
        self.groups = [list(image_order[i:i + ENCODE_GROUP]) for i in range(0, len(image_order), ENCODE_GROUP)]
        self.done: set[int] = set()

    def tokens(self, keys: Sequence[str]) -> VisualTokens:
        for group in sorted({self.group_of[k] for k in keys} - self.done):
            members = self.groups[group]
            self.adapter.encode(_LazyImages(self.dataset.load_image, members), members, batch_size=len(members))
            self.done.add(group)
        return self.adapter.encode(_LazyImages(self.dataset.load_image, keys), list(keys))


class _LazyImages(Sequence):
    """Images of ``keys``, loaded only when the adapter needs to encode one."""

    def __init__(self, load, keys: Sequence[str]):
        self._load, self._keys = load, list(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index):
        return self._load(self._keys[index])


def image_batches(questions: Sequence[Question], size: int) -> list[list[Question]]:
    """The batch grid of a list of questions: the questions of one image together (images in order
    of first appearance, each image's questions in their order), packed greedily into batches of
    at most ``size`` questions, whole images where they fit (an image with more than ``size``
    questions fills batches of its own).

    Scoring an image's questions in one batch is what lets the adapter prefill the image's prefix
    once (:mod:`studylib.models.prefix_cache`) and a question-blind pruner select once per image:
    POPE asks about each image in three splits, far apart in dataset order."""
    by_image: dict[str, list[Question]] = {}
    for q in questions:
        by_image.setdefault(q.image_key, []).append(q)
    out: list[list[Question]] = []
    batch: list[Question] = []
    for group in by_image.values():
        if batch and len(batch) + len(group) > size:
            out.append(batch)
            batch = []
        batch.extend(group)
        while len(batch) >= size:
            out.append(batch[:size])
            batch = batch[size:]
    if batch:
        out.append(batch)
    return out


def query_for(adapter: LlavaAdapter, pruner: Pruner, batch: list[Question], texts: list[str],
              tokens: VisualTokens) -> QueryContext | None:
    """The question-side signals ``pruner`` reads (none, the text embedding, or also the text
    attention, which costs a full-token prefill)."""
    signals = pruner.query_signals if pruner.stage == "vision" else ()
    if not signals:
        return None
    questions = [q.text for q in batch]
    if "text_attention" in signals:
        return adapter.query_context(questions, texts, tokens)
    return adapter.query_context(questions)


def _kept_columns(pruner: Pruner, k: int, kept: torch.Tensor, tokens: VisualTokens) -> list[dict]:
    kept = kept.cpu()
    erank, entropy = kept_token_diagnostics(tokens, kept)
    return [{"pruner": str(pruner), "k": k, "kept": kept[i].tolist(), "n_kept": int(kept.shape[1]),
             "erank_kept": float(erank[i]), "entropy_kept": float(entropy[i])} for i in range(len(kept))]


def _scored_row(q: Question, scores: ScoreResult, i: int) -> dict:
    labels = scores.labels[i]
    probs = scores.probs[i, : len(labels)]
    prediction = labels[int(np.argmax(probs))]
    return {"qid": q.qid, "image": q.image_key, "task": q.task, "split": q.split, "label": q.answer,
            "choices": list(labels), "probs": probs.tolist(), "logits": scores.logits[i, : len(labels)].tolist(),
            "prediction": prediction, "confidence": float(probs.max()), "correct": prediction == q.answer,
            "verbalizer_mass": float(scores.verbalizer_mass[i]), "top_token": scores.top_token[i]}


def _caption_row(q: Question, caption: str, dataset: Dataset, vocabulary) -> dict:
    truth = dataset.objects.get(q.image_key)
    detail = chair([caption], [truth if truth is not None else frozenset()], vocabulary).captions[0]
    known = truth is not None
    return {"qid": q.qid, "image": q.image_key, "task": q.task, "split": q.split, "label": q.answer,
            "caption": caption, "n_mentions": len(detail.mentions),
            "n_hallucinated": len(detail.hallucinated) if known else None,
            "hallucinated": detail.is_hallucinated if known else None,
            "n_gt": len(detail.ground_truth) if known else None,
            "n_recalled": len(detail.recalled) if known else None,
            "length": detail.length, "mentioned": [m.category for m in detail.mentions],
            "hallucinated_objects": [m.category for m in detail.hallucinated] if known else None}


def _group_rows(adapter: LlavaAdapter, tokens: VisualTokens, group: list[Question], pruner: Pruner, k: int,
                max_new_tokens: int, dataset: Dataset) -> list[dict]:
    """Rows of questions of one kind (scored or captions) whose images are ``tokens``."""
    texts = [adapter.build_prompt(q) for q in group]
    query = query_for(adapter, pruner, group, texts, tokens)
    if group[0].task == CAPTION_TASK:
        captions, kept = adapter.generate_pruned(texts, tokens, pruner, k, max_new_tokens, query)
        vocabulary = chair_vocabulary(dataset.chair_vocabulary)
        rows = [_caption_row(q, caption, dataset, vocabulary) for q, caption in zip(group, captions)]
    else:
        scores = adapter.score_pruned(texts, tokens, pruner, k, [prompts.verbalizer(q) for q in group], query)
        check_finite_scores(adapter, group, scores)
        kept = scores.kept
        rows = [_scored_row(q, scores, i) for i, q in enumerate(group)]
    return [{**row, **extra} for row, extra in zip(rows, _kept_columns(pruner, k, kept, tokens))]


def score_batch(adapter: LlavaAdapter, encoder: Encoder, batch: list[Question], pruner: Pruner, k: int,
                max_new_tokens: int, dataset: Dataset) -> pd.DataFrame:
    """Rows of one batch, in batch order (module docstring).  Adaptive-count pruners
    (``exact_k=False``) keep a different number of tokens per image, so they run image by image;
    images of several sizes (LLaVA-NeXT, Qwen2.5-VL) run one size at a time, ``k`` clipped to
    that size's N by the adapter (the rows keep the requested ``k``; ``n_kept`` is what was kept)."""
    by_qid: dict[str, dict] = {}
    for kinds in (SCORED_TASKS, (CAPTION_TASK,)):
        questions = [q for q in batch if q.task in kinds]
        if not questions:
            continue
        groups = [questions]
        if not pruner.exact_k:
            per_image: dict[str, list[Question]] = {}
            for q in questions:
                per_image.setdefault(q.image_key, []).append(q)
            groups = list(per_image.values())
        for group in groups:
            tokens = encoder.tokens([q.image_key for q in group])
            shapes = tokens.groups() if isinstance(tokens, RaggedTokens) else [(range(len(group)), tokens)]
            for members, sub in shapes:
                rows = _group_rows(adapter, sub, [group[i] for i in members], pruner, k, max_new_tokens, dataset)
                by_qid.update((row["qid"], row) for row in rows)
    rows = [by_qid[q.qid] for q in batch]
    present = list(dict.fromkeys(c for row in rows for c in row))
    columns = SCORED_COLUMNS if batch[0].task in SCORED_TASKS else CAPTION_COLUMNS
    order = [c for c in columns if c in present] + [c for c in present if c not in columns]
    if all(len(row) == len(present) for row in rows):  # one kind of row: build it column by column (faster)
        return pd.DataFrame({c: [row[c] for row in rows] for c in order})
    return pd.DataFrame(rows)[order]


def score_dataset(adapter: LlavaAdapter, dataset: Dataset, pruner: Pruner, k: int, batch_size: int = 64,
                  questions: list[Question] | None = None, max_new_tokens: int = 64,
                  progress: bool = True) -> pd.DataFrame:
    """Rows of ``questions`` (default: all of ``dataset``) under ``pruner`` at budget ``k``, by
    :func:`score_batch` (no store; :func:`studylib.sweep.run_sweep` stores and resumes)."""
    questions = list(dataset.questions if questions is None else questions)
    if not questions:
        raise ValueError(f"dataset {dataset.name!r} has no questions to score")
    encoder = Encoder(adapter, dataset, list(dict.fromkeys(q.image_key for q in questions)))
    frames = []
    with tqdm(total=len(questions), desc=f"{dataset.name} {pruner}@{k}", disable=not progress, leave=False) as bar:
        for batch in image_batches(questions, batch_size):
            frames.append(score_batch(adapter, encoder, batch, pruner, k, max_new_tokens, dataset))
            bar.update(len(batch))
    rows = pd.concat(frames, ignore_index=True)
    position = {q.qid: i for i, q in enumerate(questions)}
    return rows.iloc[np.argsort(rows["qid"].map(position).to_numpy(), kind="stable")].reset_index(drop=True)


__all__ = ["CAPTION_COLUMNS", "CAPTION_TASK", "ENCODE_GROUP", "Encoder", "KEPT_COLUMNS", "LIST_COLUMNS",
           "NonFiniteScoresError", "SCORED_COLUMNS", "SCORED_TASKS", "check_finite_scores", "image_batches",
           "kept_token_diagnostics", "query_for", "score_batch",
           "score_dataset"]
