"""The model adapter every experiment runs through.

    images --encode--> VisualTokens (cached per image) --pruner--> kept indices
           --score--> first-token probabilities over an answer verbalizer (one prefill forward)
           --generate--> free text (captions)

The adapter wraps a stock ``LlavaForConditionalGeneration``; it never edits the model.  The
language model receives ``inputs_embeds`` built here: the prompt's text embeddings with K
image placeholders, filled with the kept visual tokens in raster order, so positions are
contiguous exactly as with the official pre-LLM pruners.  Batches are left-padded and carry
explicit position ids, so a padded row gives the same logits as the row alone.

Rows that share their ``[system text][image]`` prefix are scored with the prefix computed once
(:mod:`studylib.models.prefix_cache`; same numbers, fewer token slots).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from studylib.models.loading import load_model
from studylib.models.llm_pruning import InLLMPruner, RegistryInLLMPruner, in_llm_pruning
from studylib.models.prefix_cache import PromptRows, prefix_groups, real_positions, shared_prefix_logits
from studylib.models.prompts import IMAGE_PLACEHOLDER
from studylib.tokens import QueryContext, Selection, VisualTokens

ImageInput = Image.Image | str | os.PathLike | bytes
Verbalizer = Mapping[str, Sequence[str]]


@dataclass
class ScoreResult:
    """First-token scores of a batch of prompts.

    ``labels[i]`` are prompt i's answer labels; ``probs[i, :len(labels[i])]`` their
    probabilities renormalised over the verbalizer (NaN-padded to the widest row);
    ``logits`` the class logits ``log sum_{v in variants} exp(z_v)`` (softmax of a row's class
    logits equals its ``probs``; temperature scaling acts on them); ``verbalizer_mass`` the
    full-vocabulary probability of all variants together (how much mass the verbalizer
    captures); ``top_token`` the full-vocabulary argmax token; ``kept`` the (B, K) indices of
    the visual tokens the LLM kept.
    """

    labels: list[tuple[str, ...]]
    probs: np.ndarray
    logits: np.ndarray
    verbalizer_mass: np.ndarray
    top_token: list[str]
    kept: torch.Tensor

    @property
    def prediction(self) -> list[str]:
        return [lab[int(np.nanargmax(p))] for lab, p in zip(self.labels, self.probs)]

    @property
    def confidence(self) -> np.ndarray:
        return np.nanmax(self.probs, axis=1)


class LlavaAdapter:
    """Encode images once, then score or generate with any subset of their visual tokens."""

    def __init__(self, model, processor, pad_to_square: bool = True):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.pad_to_square = pad_to_square
        self.image_token_id = model.config.image_token_index
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token before scoring batches")
        self._cache: dict[str, VisualTokens] = {}
        self._share_prefixes = True  # False forces the single-forward scoring path (tests, benchmarks)
        self._encode_prompt = lru_cache(maxsize=65536)(self._encode_prompt_uncached)
        self._token_ids = lru_cache(maxsize=4096)(self._single_token_id)

    @classmethod
    def load(cls, name_or_path: str | os.PathLike = "toy", device: str = "cpu", dtype=torch.float32):
        return cls(*load_model(name_or_path, device=device, dtype=dtype))

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def num_patches(self) -> int:
        vision = self.model.config.vision_config
        return (vision.image_size // vision.patch_size) ** 2

    # ------------------------------------------------------------------ images

    def _as_pil(self, image: ImageInput, key: str) -> Image.Image:
        try:
            if isinstance(image, Image.Image):
                return image.convert("RGB")
            if isinstance(image, bytes):
                return Image.open(io.BytesIO(image)).convert("RGB")
            return Image.open(image).convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise ValueError(f"image {key!r} could not be decoded ({error}); "
                             f"pass a readable RGB image file or a PIL image") from error

    def _square(self, image: Image.Image) -> Image.Image:
        """LLaVA-1.5's ``image_aspect_ratio='pad'``: pad to square with the mean colour."""
        w, h = image.size
        if w == h or not self.pad_to_square:
            return image
        fill = tuple(int(round(m * 255)) for m in self.image_processor.image_mean)
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), fill)
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        return canvas

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        batch = self.image_processor([self._square(im) for im in images], return_tensors="pt")
        return batch["pixel_values"].to(self.device, self.model.dtype)

    @torch.inference_mode()
    def _encode_batch(self, images: Sequence[Image.Image], image_keys: tuple[str, ...]) -> VisualTokens:
        """Run the vision tower once and read everything the pruners need from layer -2."""
        tower = self.model.model.vision_tower
        encoder = getattr(tower, "vision_model", tower).encoder  # older transformers nest it
        layer = encoder.layers[self.model.config.vision_feature_layer]
        captured: dict[str, torch.Tensor] = {}
        hooks = [
            layer.self_attn.register_forward_hook(lambda m, a, out: captured.__setitem__("attn", out[1])),
            layer.self_attn.k_proj.register_forward_hook(lambda m, a, out: captured.__setitem__("keys", out)),
        ]
        try:
            out = tower(self.pixel_values(images), output_hidden_states=True)
        finally:
            for h in hooks:
                h.remove()
        if captured.get("attn") is None:
            raise RuntimeError("the vision tower returned no attention weights; load the model with "
                               "attn_implementation={'vision_config': 'eager', 'text_config': 'sdpa'}")
        hidden = out.hidden_states[self.model.config.vision_feature_layer]
        features = hidden[:, 1:]
        attention = captured["attn"]  # (B, heads, N + 1, N + 1), post-softmax
        b, length, width = captured["keys"].shape
        head_mean_keys = captured["keys"].view(b, length, attention.shape[1], -1).mean(2)
        n = features.shape[1]
        rows = int(round(n**0.5))
        return VisualTokens(
            features=features,
            embeddings=self.model.model.multi_modal_projector(features),
            cls_attention=attention[:, :, 0, 1:].float().mean(1),
            cls_feature=hidden[:, 0],
            keys=head_mean_keys[:, 1:],
            grid=(rows, n // rows),
            image_keys=image_keys,
        )

    def encode(self, images: Sequence[ImageInput], keys: Sequence[str] | None = None,
               batch_size: int = 16) -> VisualTokens:
        """Vision features of ``images`` (one row each, in order), cached by key.

        ``keys`` name the images (defaults to file paths for path inputs); images whose key is
        cached are not re-encoded, so a sweep encodes each image once."""
        if keys is None:
            if not all(isinstance(im, (str, os.PathLike)) for im in images):
                raise ValueError("pass keys=... to encode in-memory images (keys name the cache entries)")
            keys = [str(im) for im in images]
        if len(keys) != len(images):
            raise ValueError(f"{len(images)} images but {len(keys)} keys")
        if not images:
            raise ValueError("encode() got no images")
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            pils = [self._as_pil(images[i], keys[i]) for i in chunk]
            encoded = self._encode_batch(pils, tuple(keys[i] for i in chunk))
            for j, i in enumerate(chunk):
                self._cache[keys[i]] = encoded[j]
        return VisualTokens.concat([self._cache[k] for k in keys])

    def clear_cache(self) -> None:
        self._cache.clear()

    # ------------------------------------------------------------------ prompts and verbalizers

    def _encode_prompt_uncached(self, prompt: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Token ids before and after the single image placeholder (LLaVA's
        ``tokenizer_image_token``: chunks encoded separately, BOS only on the first)."""
        parts = prompt.split(IMAGE_PLACEHOLDER)
        if len(parts) != 2:
            raise ValueError(f"a prompt must contain exactly one {IMAGE_PLACEHOLDER!r} placeholder, "
                             f"found {len(parts) - 1} in {prompt[:80]!r}")
        before = self.tokenizer(parts[0]).input_ids
        after = self.tokenizer(parts[1], add_special_tokens=False).input_ids
        return tuple(before), tuple(after)

    def _single_token_id(self, word: str) -> int:
        ids = self.tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1 or ids[0] == self.tokenizer.unk_token_id:
            pieces = self.tokenizer.convert_ids_to_tokens(ids)
            raise ValueError(f"verbalizer word {word!r} is not a single token in this tokenizer "
                             f"(it encodes to {pieces}); use words that encode to one known token")
        return ids[0]

    def verbalizer_ids(self, verbalizer: Verbalizer) -> list[list[int]]:
        """Token ids of each label's variants; every variant must be one distinct token."""
        if not verbalizer:
            raise ValueError("the verbalizer is empty; give at least two answer labels")
        ids = [[self._token_ids(w) for w in words] for words in verbalizer.values()]
        flat = [i for row in ids for i in row]
        if len(set(flat)) != len(flat):
            raise ValueError(f"verbalizer {dict(verbalizer)} maps two variants to the same token")
        return ids

    # ------------------------------------------------------------------ LLM inputs

    def _visual_sequence(self, tokens: VisualTokens, keep: torch.Tensor | Selection | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D_l) projected visual tokens the LLM sees, and the (B, K) kept indices."""
        n = tokens.num_patches
        if keep is None:
            keep = torch.arange(n).expand(tokens.batch_size, n)
        if isinstance(keep, Selection):
            indices, merged = keep.indices, keep.merged
        else:
            indices, merged = torch.as_tensor(keep), None
        validate_indices(indices, tokens.batch_size, n)
        indices = indices.sort(1).values  # raster order, whatever order the caller used
        if merged is not None:
            with torch.inference_mode():
                return self.model.model.multi_modal_projector(merged.to(self.device, self.model.dtype)), indices
        index = indices.to(tokens.embeddings.device).unsqueeze(-1).expand(-1, -1, tokens.embeddings.shape[-1])
        return tokens.embeddings.gather(1, index), indices

    def _inputs(self, prompts: Sequence[str], visual: torch.Tensor, suffixes: Sequence[Sequence[int]] | None = None):
        """Left-padded ``inputs_embeds``, attention mask, position ids and image positions."""
        check_rows(prompts, visual)
        k = visual.shape[1]
        rows = self._prompt_rows(prompts, suffixes)
        sequences = [list(before) + [self.image_token_id] * k + list(after) for before, after in rows]
        ids, mask = self.left_padded(sequences)
        width = ids.shape[1]
        image_positions = torch.stack([torch.arange(k) + width - len(seq) + len(before)
                                       for seq, (before, _) in zip(sequences, rows)])
        embeds = self.embed_ids(ids, visual)
        return embeds, mask, real_positions(mask), image_positions.to(self.device)

    def _prompt_rows(self, prompts: Sequence[str], suffixes: Sequence[Sequence[int]] | None) -> PromptRows:
        """(before ids, after ids + the row's extra suffix ids) of every prompt."""
        rows = []
        for i, prompt in enumerate(prompts):
            before, after = self._encode_prompt(prompt)
            extra = tuple(suffixes[i]) if suffixes is not None else ()
            rows.append((before, after + extra))
        return rows

    def left_padded(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, width) token ids right-aligned on pad tokens, and the mask of the real ones."""
        width = max(len(seq) for seq in sequences)
        ids = torch.full((len(sequences), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, seq in enumerate(sequences):
            if seq:
                ids[i, width - len(seq):] = torch.tensor(seq)
                mask[i, width - len(seq):] = 1
        return ids.to(self.device), mask.to(self.device)

    def embed_ids(self, ids: torch.Tensor, visual: torch.Tensor | None = None) -> torch.Tensor:
        """Input embeddings of ``ids`` with the image slots filled by ``visual`` row by row."""
        embeds = self.model.get_input_embeddings()(ids)
        if visual is None:
            return embeds
        slots = (ids == self.image_token_id).unsqueeze(-1)
        return embeds.masked_scatter(slots, visual.to(embeds.dtype))

    # ------------------------------------------------------------------ scoring

    @torch.inference_mode()
    def _last_logits(self, prompts, tokens, keep, in_llm, k_llm, suffixes=None):
        visual, indices = self._visual_sequence(tokens, keep)
        check_rows(prompts, visual)
        if in_llm is None and self._share_prefixes:
            rows = self._prompt_rows(prompts, suffixes)
            group_of = prefix_groups(rows, tokens.image_keys, visual, indices)
            if group_of is not None:
                return shared_prefix_logits(self, rows, visual, group_of), indices
        embeds, mask, positions, image_positions = self._inputs(prompts, visual, suffixes)
        record: dict = {}
        if in_llm is not None:
            validate_budget(k_llm, visual.shape[1])
            with in_llm_pruning(self.model, in_llm, k_llm, image_positions, mask, record):
                out = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                 logits_to_keep=1, use_cache=False)
            indices = indices.gather(1, record["kept"].to(indices.device))
        else:
            out = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                             logits_to_keep=1, use_cache=False)
        return out.logits[:, -1].float(), indices

    def score(self, prompts: Sequence[str], tokens: VisualTokens, keep: torch.Tensor | Selection | None = None,
              choices: Verbalizer | Sequence[Verbalizer] = (), in_llm: InLLMPruner | None = None,
              in_llm_k: int | None = None) -> ScoreResult:
        """First-token probabilities over each prompt's verbalizer, by one prefill forward
        (or, when rows share their ``[system text][image]`` prefix, one forward over the unique
        prefixes and one over the question suffixes: same numbers, see the module docstring).

        ``tokens`` has one image row per prompt; ``keep`` is a (B, K) index tensor, a
        :class:`Selection`, or ``None`` for all tokens.  ``choices`` is one verbalizer for all
        prompts or one per prompt, e.g. ``{"yes": ("Yes", "yes"), "no": ("No", "no")}``.
        With ``in_llm`` (FastV, DART) the visual tokens in ``keep`` enter the LLM and
        ``in_llm_k`` of them survive from the pruner's layer on.
        """
        verbalizers = [choices] * len(prompts) if isinstance(choices, Mapping) else list(choices)
        if len(verbalizers) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(verbalizers)} verbalizers")
        logits, indices = self._last_logits(prompts, tokens, keep, in_llm, in_llm_k)
        log_probs = logits.log_softmax(-1)
        width = max(len(v) for v in verbalizers)
        class_logits = np.full((len(prompts), width), np.nan)
        probs = np.full((len(prompts), width), np.nan)
        mass = np.empty(len(prompts))
        for i, verbalizer in enumerate(verbalizers):
            ids = self.verbalizer_ids(verbalizer)
            per_class = torch.stack([log_probs[i, row].logsumexp(0) for row in ids])
            class_logits[i, : len(ids)] = per_class.double().cpu().numpy()
            probs[i, : len(ids)] = per_class.softmax(0).double().cpu().numpy()
            mass[i] = per_class.logsumexp(0).exp().item()
        top = self.tokenizer.convert_ids_to_tokens(logits.argmax(-1).tolist())
        return ScoreResult([tuple(v) for v in verbalizers], probs, class_logits, mass, top, indices)

    def _route(self, pruner, tokens: VisualTokens, k: int, query: QueryContext | None):
        """(keep, in_llm, in_llm_k) for a registry pruner: vision-stage pruners select here,
        LLM-stage pruners (FastV, DART) select inside the language model."""
        if getattr(pruner, "stage", "vision") == "llm":
            return None, RegistryInLLMPruner(pruner), k
        return pruner(tokens, k, query), None, None

    def score_pruned(self, prompts: Sequence[str], tokens: VisualTokens, pruner, k: int,
                     choices: Verbalizer | Sequence[Verbalizer], query: QueryContext | None = None) -> ScoreResult:
        """:meth:`score` with the visual tokens a registry pruner keeps at budget ``k``."""
        keep, in_llm, in_llm_k = self._route(pruner, tokens, k, query)
        return self.score(prompts, tokens, keep, choices, in_llm=in_llm, in_llm_k=in_llm_k)

    def generate_pruned(self, prompts: Sequence[str], tokens: VisualTokens, pruner, k: int,
                        max_new_tokens: int = 64, query: QueryContext | None = None) -> tuple[list[str], torch.Tensor]:
        """:meth:`generate` with the visual tokens a registry pruner keeps at budget ``k``.

        Returns the texts and the (B, K) indices of the kept visual tokens; in-LLM pruners
        re-select at every step, and their indices are those kept at the prefill."""
        keep, in_llm, in_llm_k = self._route(pruner, tokens, k, query)
        if in_llm is None:
            _, kept = self._visual_sequence(tokens, keep)
            return self.generate(prompts, tokens, keep, max_new_tokens), kept
        texts, _, kept = self._generate_without_cache(prompts, tokens, keep, max_new_tokens, in_llm, in_llm_k)
        return texts, kept

    def query_context(self, questions: Sequence[str], prompts: Sequence[str] | None = None,
                      tokens: VisualTokens | None = None, layer: int = 2) -> QueryContext:
        """Question-side signals for instruction-aware pruners.

        ``text_embedding``: mean input embedding of each question's tokens.  With ``prompts``
        and ``tokens`` also ``text_attention``: the head-mean attention of the last prompt
        token over the image tokens at decoder layer ``layer - 1`` of a full-token prefill."""
        embedding = self.model.get_input_embeddings()
        rows = []
        with torch.inference_mode():
            for q in questions:
                ids = self.tokenizer(q, add_special_tokens=False).input_ids
                if not ids:
                    raise ValueError("empty question text; instruction-aware pruners need the question")
                rows.append(embedding(torch.tensor(ids, device=self.device)).float().mean(0))
        attention = None
        if prompts is not None and tokens is not None:
            recorder = _AttentionRecorder(layer)
            self._last_logits(prompts, tokens, None, recorder, tokens.num_patches)
            attention = recorder.row
        return QueryContext(torch.stack(rows), attention)

    # ------------------------------------------------------------------ generation

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], tokens: VisualTokens, keep: torch.Tensor | Selection | None = None,
                 max_new_tokens: int = 64, in_llm: InLLMPruner | None = None, in_llm_k: int | None = None,
                 output_scores: bool = False):
        """Greedy continuation of each prompt; returns the decoded texts (and, with
        ``output_scores``, the (B, V) float32 logits of the first generated token).

        Without in-LLM pruning this is ``model.generate`` on the same ``inputs_embeds`` as
        :meth:`score`.  With ``in_llm`` it follows FastV's in-place variant: no KV cache, every
        step re-runs the sequence and re-prunes from the pruner's layer."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if in_llm is not None:
            texts, first_logits, _ = self._generate_without_cache(prompts, tokens, keep, max_new_tokens, in_llm, in_llm_k)
            return (texts, first_logits) if output_scores else texts
        visual, _ = self._visual_sequence(tokens, keep)
        embeds, mask, _, _ = self._inputs(prompts, visual)
        out = self.model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                  do_sample=False, num_beams=1, output_logits=output_scores,
                                  return_dict_in_generate=True, pad_token_id=self.tokenizer.pad_token_id)
        texts = self.tokenizer.batch_decode(out.sequences, skip_special_tokens=True)
        texts = [t.strip() for t in texts]
        return (texts, out.logits[0].float()) if output_scores else texts

    def _generate_without_cache(self, prompts, tokens, keep, max_new_tokens, in_llm, in_llm_k):
        """Greedy decoding that re-runs the whole sequence at every step (in-LLM pruning):
        (texts, first-step logits, (B, K) tokens kept at the first step)."""
        eos = self.tokenizer.eos_token_id
        generated: list[list[int]] = [[] for _ in prompts]
        finished = [False] * len(prompts)
        first_logits = first_kept = None
        for _ in range(max_new_tokens):
            logits, kept = self._last_logits(prompts, tokens, keep, in_llm, in_llm_k, suffixes=generated)
            if first_logits is None:
                first_logits, first_kept = logits, kept
            for i, token in enumerate(logits.argmax(-1).tolist()):
                if not finished[i]:
                    generated[i].append(token)
                    finished[i] = token == eos
            if all(finished):
                break
        texts = [self.tokenizer.decode([t for t in g if t != eos], skip_special_tokens=True).strip()
                 for g in generated]
        return texts, first_logits, first_kept


def check_rows(prompts: Sequence[str], visual: torch.Tensor) -> None:
    if not prompts:
        raise ValueError("the prompt batch is empty; pass at least one prompt")
    if len(prompts) != visual.shape[0]:
        raise ValueError(f"{len(prompts)} prompts but visual tokens for {visual.shape[0]} images; "
                         f"pass one image row per prompt")


class _AttentionRecorder:
    """An in-LLM "pruner" that keeps every token and records FastV's attention row."""

    def __init__(self, layer: int):
        self.layer = layer
        self.row: torch.Tensor | None = None

    def select_in_llm(self, state, k: int) -> torch.Tensor:
        self.row = state.attention_row.float()
        return torch.arange(k, device=self.row.device).expand(self.row.shape[0], k)


def validate_budget(k: int | None, n: int) -> None:
    if k is None or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"token budget K must be an integer in [1, {n}], got {k!r}")


def validate_indices(indices: torch.Tensor, batch: int, n: int) -> None:
    """Kept indices: (B, K) integers, 1 <= K <= N, in range, distinct within each row."""
    if indices.dim() != 2 or indices.shape[0] != batch:
        raise ValueError(f"kept indices must have shape (B={batch}, K), got {tuple(indices.shape)}")
    if indices.dtype.is_floating_point:
        raise ValueError("kept indices must be integers")
    validate_budget(indices.shape[1], n)
    if indices.min() < 0 or indices.max() >= n:
        raise ValueError(f"kept indices out of range: they must lie in [0, {n - 1}], "
                         f"got min {int(indices.min())}, max {int(indices.max())}")
    ordered = indices.sort(1).values
    if (ordered[:, 1:] == ordered[:, :-1]).any():
        raise ValueError("kept indices contain duplicates within a row; each token may be kept once")
