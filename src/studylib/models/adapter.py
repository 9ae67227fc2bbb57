"""The model adapter every experiment runs through.

    images --encode--> VisualTokens (cached per image) --pruner--> kept indices
           --score--> first-token probabilities over an answer verbalizer (one prefill forward)
           --generate--> free text (captions)

The adapter wraps a stock Hugging Face model of one of the families in
:mod:`studylib.models.families` (LLaVA-1.5, LLaVA-NeXT, Qwen2.5-VL); it never edits the model.
The language model receives ``inputs_embeds`` built here: the prompt's text embeddings with one
image slot per token of the row's visual block (the kept visual tokens in raster order, plus
LLaVA-NeXT's image-newline tokens), at positions the family gives (contiguous for the LLaVA
families, as with the official pre-LLM pruners; Qwen2.5-VL's unpruned M-RoPE positions).
Batches are left-padded and carry explicit position ids, so a padded row gives the same logits
as the row alone; images of several sizes are scored one size at a time
(:mod:`studylib.models.batching`).

The system text is prefilled once and rows that share their ``[system text][image]`` prefix are
scored with the prefix computed once (:mod:`studylib.models.prefix_cache`; same numbers to float
rounding, fewer token slots).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from studylib.models.batching import (ScoreResult, clip_budget, distinct_images, greedy_decode, merge_kept,
                                      merge_scores, pick, repeat_selection, sub_query)
from studylib.models.families import VisualRow, family_for, row_positions
from studylib.models.llm_pruning import InLLMPruner, RegistryInLLMPruner, in_llm_pruning
from studylib.models.loading import load_model
from studylib.models.prefix_cache import PromptRows, cached_prefix_logits, padded_positions
from studylib.models.shared_in_llm import InLLMPrefixes, shares_prefix
from studylib.tokens import QueryContext, RaggedTokens, Selection, VisualTokens, stack_tokens

ImageInput = Image.Image | str | os.PathLike | bytes
Verbalizer = Mapping[str, Sequence[str]]


def single_token_id(tokenizer, word: str) -> int:
    """The id of verbalizer ``word``, which must encode to exactly one known token."""
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise ValueError(f"verbalizer word {word!r} is not a single token in this tokenizer "
                         f"(it encodes to {pieces}); use words that encode to one known token")
    return ids[0]


class LlavaAdapter:
    """Encode images once, then score or generate with any subset of their visual tokens.

    Family-blind: a :class:`~studylib.models.families.Family` (picked from the model's class:
    LLaVA-1.5, LLaVA-NeXT, Qwen2.5-VL) turns images into :class:`VisualTokens` and kept tokens
    into each row's visual block and position ids; ``family_options`` go to it
    (``prune_scope`` for LLaVA-NeXT, ``saliency_block`` for Qwen2.5-VL)."""

    def __init__(self, model, processor, pad_to_square: bool = True, **family_options):
        if not pad_to_square:
            family_options["pad_to_square"] = False
        self.family = family_for(model, processor, **family_options)
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.image_token_id = self.family.image_token_id
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token before scoring batches")
        self._cache: dict[str, VisualTokens] = {}
        self._system_states: dict[tuple[int, ...], list] = {}  # keys/values of system texts (prefix_cache)
        self._share_prefixes = True  # False forces the single-forward scoring path (tests, benchmarks)
        self._encode_prompt = lru_cache(maxsize=65536)(self._encode_prompt_uncached)
        self._token_ids = lru_cache(maxsize=4096)(self._single_token_id)

    @classmethod
    def load(cls, name_or_path: str | os.PathLike = "toy", device: str = "cpu", dtype=torch.float32,
             **family_options):
        return cls(*load_model(name_or_path, device=device, dtype=dtype), **family_options)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def num_patches(self) -> int:
        """N of a fixed-size image; the maximum N for families whose N varies with the image."""
        return self.family.num_patches

    def build_prompt(self, question) -> str:
        """The model's own single-turn evaluation prompt for ``question`` (see the families)."""
        return self.family.build_prompt(question)

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

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.family.pixel_values(images)  # LLaVA-1.5 only: the square-padded pixel batch

    def encode(self, images: Sequence[ImageInput], keys: Sequence[str] | None = None,
               batch_size: int = 16) -> VisualTokens | RaggedTokens:
        """Vision features of ``images`` (one row each, in order), cached by key.

        ``keys`` name the images (defaults to file paths for path inputs); images whose key is
        cached are not re-encoded, so a sweep encodes each image once.  Images of several
        shapes (LLaVA-NeXT, Qwen2.5-VL) give a :class:`RaggedTokens`."""
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
            encoded = self.family.encode_images(pils, tuple(keys[i] for i in chunk))
            for j, i in enumerate(chunk):
                self._cache[keys[i]] = encoded[j]
        return stack_tokens([self._cache[k] for k in keys])

    def clear_cache(self) -> None:
        self._cache.clear()
        self._system_states.clear()

    # ------------------------------------------------------------------ prompts and verbalizers

    def _encode_prompt_uncached(self, prompt: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Token ids before and after the single image placeholder (LLaVA's
        ``tokenizer_image_token``: chunks encoded separately, BOS only on the first)."""
        placeholder = self.family.placeholder
        parts = prompt.split(placeholder)
        if len(parts) != 2:
            raise ValueError(f"a prompt must contain exactly one {placeholder!r} placeholder, "
                             f"found {len(parts) - 1} in {prompt[:80]!r}")
        before = self.tokenizer(parts[0]).input_ids
        after = self.tokenizer(parts[1], add_special_tokens=False).input_ids
        return tuple(before), tuple(after)

    def _single_token_id(self, word: str) -> int:
        return single_token_id(self.tokenizer, word)

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

    def _visual_sequence(self, tokens: VisualTokens, keep: torch.Tensor | Selection | None) -> tuple[list[VisualRow], torch.Tensor]:
        """Each row's visual block as the LLM sees it, and the (B, K) kept indices."""
        if isinstance(tokens, RaggedTokens):
            raise ValueError("images of several sizes: score them through score()/score_pruned() "
                             "(one sub-batch per size) or index one size group first")
        n = tokens.num_patches
        if keep is None:
            keep = torch.arange(n).expand(tokens.batch_size, n)
        if isinstance(keep, Selection):
            indices, merged = keep.indices, keep.merged
        else:
            indices, merged = torch.as_tensor(keep), None
        validate_indices(indices, tokens.batch_size, n)
        indices = indices.sort(1).values  # raster order, whatever order the caller used
        with torch.inference_mode():
            return self.family.visual_rows(tokens, indices, merged), indices

    def _inputs(self, prompts: Sequence[str], visual: Sequence[VisualRow], suffixes: Sequence[Sequence[int]] | None = None):
        """Left-padded ``inputs_embeds``, attention mask, position ids and image positions."""
        check_rows(prompts, visual)
        rows = self._prompt_rows(prompts, suffixes)
        sequences = [list(before) + [self.image_token_id] * v.length + list(after) for (before, after), v in zip(rows, visual)]
        ids, mask = self.left_padded(sequences)
        width = ids.shape[1]
        image_positions = torch.stack([v.patch_slots + width - len(seq) + len(before)
                                       for seq, (before, _), v in zip(sequences, rows, visual)])
        positions = padded_positions([row_positions(len(before), v, len(after)) for (before, after), v in zip(rows, visual)], width)
        return self.embed_ids(ids, visual), mask, positions.to(self.device), image_positions.to(self.device)

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
        lengths = torch.tensor([len(seq) for seq in sequences])
        width = int(lengths.max())
        mask = torch.arange(width) >= width - lengths.unsqueeze(1)
        ids = torch.full((len(sequences), width), self.tokenizer.pad_token_id, dtype=torch.long)
        ids[mask] = torch.tensor([token for seq in sequences for token in seq], dtype=torch.long)  # row-major order
        return ids.to(self.device), mask.long().to(self.device)

    def embed_ids(self, ids: torch.Tensor, visual: Sequence[VisualRow] | None = None) -> torch.Tensor:
        """Input embeddings of ``ids`` with the image slots filled by ``visual`` row by row."""
        embeds = self.model.get_input_embeddings()(ids)
        if visual is None:
            return embeds
        slots = (ids == self.image_token_id).unsqueeze(-1)
        return embeds.masked_scatter(slots, torch.cat([v.embeds for v in visual]).to(embeds.dtype))

    # ------------------------------------------------------------------ scoring

    @torch.inference_mode()
    def _last_logits(self, prompts, tokens, keep, in_llm, k_llm, suffixes=None):
        visual, indices = self._visual_sequence(tokens, keep)
        check_rows(prompts, visual)
        if in_llm is None and self._share_prefixes:
            logits = cached_prefix_logits(self, self._prompt_rows(prompts, suffixes), tokens.image_keys, visual, indices)
            if logits is not None:
                return logits, indices
        prefixes = self._in_llm_prefixes(prompts, suffixes, tokens, visual, indices, in_llm, k_llm)
        if prefixes is not None:
            logits, chosen = prefixes.logits()
            return logits, indices.gather(1, chosen.to(indices.device))
        embeds, mask, positions, image_positions = self._inputs(prompts, visual, suffixes)
        record: dict = {}
        if in_llm is not None:
            validate_budget(k_llm, image_positions.shape[1])
            with in_llm_pruning(self.model, in_llm, k_llm, image_positions, mask, record):
                out = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                 logits_to_keep=1, use_cache=False)
            indices = indices.gather(1, record["kept"].to(indices.device))
        else:
            out = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                             logits_to_keep=1, use_cache=False)
        return out.logits[:, -1].float(), indices

    def score(self, prompts: Sequence[str], tokens: VisualTokens | RaggedTokens,
              keep: torch.Tensor | Selection | None = None, choices: Verbalizer | Sequence[Verbalizer] = (),
              in_llm: InLLMPruner | None = None, in_llm_k: int | None = None) -> ScoreResult:
        """First-token probabilities over each prompt's verbalizer, by one prefill forward
        (or, when rows share their ``[system text][image]`` prefix, one forward over the unique
        prefixes and one over the question suffixes: same numbers, see the module docstring).

        ``tokens`` has one image row per prompt; ``keep`` is a (B, K) index tensor, a
        :class:`Selection`, or ``None`` for all tokens.  ``choices`` is one verbalizer for all
        prompts or one per prompt, e.g. ``{"yes": ("Yes", "yes"), "no": ("No", "no")}``.
        With ``in_llm`` (FastV, DART) the visual tokens in ``keep`` enter the LLM and
        ``in_llm_k`` of them survive from the pruner's layer on.  Images of several sizes
        (:class:`RaggedTokens`, ``keep=None`` only) are scored per size, ``in_llm_k`` clipped
        to each size's N (:func:`merge_scores`).
        """
        verbalizers = [choices] * len(prompts) if isinstance(choices, Mapping) else list(choices)
        if len(verbalizers) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(verbalizers)} verbalizers")
        if isinstance(tokens, RaggedTokens):
            if keep is not None:
                raise ValueError("pass keep=None for images of several sizes (or prune with score_pruned)")
            return merge_scores(len(prompts), [
                (rows, self.score(pick(prompts, rows), sub, None, pick(verbalizers, rows), in_llm,
                                  clip_budget(in_llm_k, sub))) for rows, sub in tokens.groups()])
        logits, indices = self._last_logits(prompts, tokens, keep, in_llm, in_llm_k)
        class_logits, probs, mass = self._verbalizer_scores(logits.log_softmax(-1), verbalizers)
        top = self.tokenizer.convert_ids_to_tokens(logits.argmax(-1).tolist())
        return ScoreResult([tuple(v) for v in verbalizers], probs, class_logits, mass, top, indices)

    def _verbalizer_scores(self, log_probs: torch.Tensor, verbalizers: Sequence[Verbalizer]):
        """(class logits, probabilities, verbalizer mass) of each row (:class:`ScoreResult`),
        computed once per distinct verbalizer for all its rows: a class's logit is the
        ``logsumexp`` of its variants' log-probabilities (absent variants padded with -inf)."""
        width = max(len(v) for v in verbalizers)
        class_logits = np.full((len(verbalizers), width), np.nan)
        probs = np.full((len(verbalizers), width), np.nan)
        mass = np.empty(len(verbalizers))
        rows_of: dict[tuple, list[int]] = {}
        for i, verbalizer in enumerate(verbalizers):
            rows_of.setdefault(tuple((label, tuple(words)) for label, words in verbalizer.items()), []).append(i)
        for rows, first in ((rows, rows[0]) for rows in rows_of.values()):
            ids = self.verbalizer_ids(verbalizers[first])
            depth = max(len(variants) for variants in ids)
            table = torch.tensor([variants + variants[:1] * (depth - len(variants)) for variants in ids])
            absent = torch.tensor([[j >= len(variants) for j in range(depth)] for variants in ids])
            picked = log_probs[rows][:, table.to(log_probs.device)].masked_fill(absent.to(log_probs.device), -math.inf)
            per_class = picked.logsumexp(-1)
            class_logits[rows, : len(ids)] = per_class.double().cpu().numpy()
            probs[rows, : len(ids)] = per_class.softmax(-1).double().cpu().numpy()
            mass[rows] = per_class.logsumexp(-1).exp().double().cpu().numpy()
        return class_logits, probs, mass

    def _route(self, pruner, tokens: VisualTokens, k: int, query: QueryContext | None):
        """(keep, in_llm, in_llm_k) for a registry pruner: vision-stage pruners select here
        (through the family, which may prune per section), LLM-stage pruners (FastV, DART)
        select inside the language model."""
        if getattr(pruner, "stage", "vision") == "llm":
            return None, RegistryInLLMPruner(pruner), k
        distinct = distinct_images(tokens) if query is None else None
        if distinct is not None:  # a question-blind pruner selects once per image, not once per question
            first, slot = distinct
            return repeat_selection(self._select(pruner, tokens[first], k, None), slot), None, None
        return self._select(pruner, tokens, k, query), None, None

    def _select(self, pruner, tokens: VisualTokens, k: int, query: QueryContext | None) -> Selection:
        """A vision-stage pruner's selection, through the family's ``select`` when it has one."""
        select = getattr(self.family, "select", None)
        return select(pruner, tokens, k, query) if select else pruner(tokens, k, query)

    def _budget(self, k: int, tokens: VisualTokens) -> int:  # clipped to N where N varies with the image
        return clip_budget(k, tokens) if self.family.variable_n else k

    def score_pruned(self, prompts: Sequence[str], tokens: VisualTokens | RaggedTokens, pruner, k: int,
                     choices: Verbalizer | Sequence[Verbalizer], query: QueryContext | None = None) -> ScoreResult:
        """:meth:`score` with the visual tokens a registry pruner keeps at budget ``k`` (for
        images of several sizes: per size, ``k`` clipped to that size's N)."""
        if isinstance(tokens, RaggedTokens):
            verbalizers = [choices] * len(prompts) if isinstance(choices, Mapping) else list(choices)
            return merge_scores(len(prompts), [
                (rows, self.score_pruned(pick(prompts, rows), sub, pruner, clip_budget(k, sub),
                                         pick(verbalizers, rows), sub_query(query, rows, sub)))
                for rows, sub in tokens.groups()])
        keep, in_llm, in_llm_k = self._route(pruner, tokens, self._budget(k, tokens), query)
        return self.score(prompts, tokens, keep, choices, in_llm=in_llm, in_llm_k=in_llm_k)

    def generate_pruned(self, prompts: Sequence[str], tokens: VisualTokens | RaggedTokens, pruner, k: int,
                        max_new_tokens: int = 64, query: QueryContext | None = None) -> tuple[list[str], torch.Tensor]:
        """:meth:`generate` with the visual tokens a registry pruner keeps at budget ``k``.

        Returns the texts and the (B, K) indices of the kept visual tokens; in-LLM pruners
        re-select at every step, and their indices are those kept at the prefill."""
        if isinstance(tokens, RaggedTokens):
            parts = [(rows, self.generate_pruned(pick(prompts, rows), sub, pruner, clip_budget(k, sub),
                                                 max_new_tokens, sub_query(query, rows, sub)))
                     for rows, sub in tokens.groups()]
            texts = [""] * len(prompts)
            for rows, (part, _) in parts:
                for i, text in zip(rows, part):
                    texts[i] = text
            return texts, merge_kept(len(prompts), [(rows, kept) for rows, (_, kept) in parts])
        keep, in_llm, in_llm_k = self._route(pruner, tokens, self._budget(k, tokens), query)
        if in_llm is None:
            _, kept = self._visual_sequence(tokens, keep)
            return self.generate(prompts, tokens, keep, max_new_tokens), kept
        texts, _, kept = self._generate_without_cache(prompts, tokens, keep, max_new_tokens, in_llm, in_llm_k)
        return texts, kept

    def query_context(self, questions: Sequence[str], prompts: Sequence[str] | None = None,
                      tokens: VisualTokens | RaggedTokens | None = None, layer: int = 2) -> QueryContext:
        """Question-side signals for instruction-aware pruners.

        ``text_embedding``: mean input embedding of each question's tokens.  With ``prompts``
        and ``tokens`` also ``text_attention``: the head-mean attention of the last prompt
        token over the image tokens at decoder layer ``layer - 1`` of a full-token prefill
        (NaN-padded to the largest N for images of several sizes)."""
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
            groups = tokens.groups() if isinstance(tokens, RaggedTokens) else [(list(range(len(prompts))), tokens)]
            attention = torch.full((len(prompts), tokens.num_patches), float("nan"), device=self.device)
            for members, sub in groups:
                recorder = _AttentionRecorder(layer)
                self._last_logits(pick(prompts, members), sub, None, recorder, sub.num_patches)
                attention[members, : sub.num_patches] = recorder.row.to(attention.device)
        return QueryContext(torch.stack(rows), attention)

    # ------------------------------------------------------------------ generation

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], tokens: VisualTokens | RaggedTokens,
                 keep: torch.Tensor | Selection | None = None, max_new_tokens: int = 64,
                 in_llm: InLLMPruner | None = None, in_llm_k: int | None = None, output_scores: bool = False):
        """Greedy continuation of each prompt; returns the decoded texts (and, with
        ``output_scores``, the (B, V) float32 logits of the first generated token).

        Without in-LLM pruning this is ``model.generate`` on the same ``inputs_embeds`` as
        :meth:`score` (for M-RoPE families, a KV-cached greedy loop that carries the 3-D
        positions, :func:`greedy_decode`).  With ``in_llm`` it follows FastV's in-place variant:
        every step re-prunes from the pruner's layer on the whole sequence; under FastV and DART
        the prompt's states below that layer are computed once (:meth:`_in_llm_step`)."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if isinstance(tokens, RaggedTokens):
            raise ValueError("generate() takes images of one size; use generate_pruned() for several sizes")
        if in_llm is not None:
            texts, first_logits, _ = self._generate_without_cache(prompts, tokens, keep, max_new_tokens, in_llm, in_llm_k)
            return (texts, first_logits) if output_scores else texts
        visual, _ = self._visual_sequence(tokens, keep)
        embeds, mask, positions, _ = self._inputs(prompts, visual)
        if self.family.position_dims > 1:
            sequences, first_logits = greedy_decode(self.model, embeds, mask, positions, max_new_tokens,
                                                    self.tokenizer.eos_token_id)
        else:
            out = self.model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                      do_sample=False, num_beams=1, output_logits=output_scores,
                                      return_dict_in_generate=True, pad_token_id=self.tokenizer.pad_token_id)
            sequences, first_logits = out.sequences, out.logits[0].float() if output_scores else None
        texts = [t.strip() for t in self.tokenizer.batch_decode(sequences, skip_special_tokens=True)]
        return (texts, first_logits) if output_scores else texts

    def _in_llm_step(self, prompts, tokens, keep, in_llm, in_llm_k):
        """The function from the tokens generated so far to each row's next-token logits and kept
        indices.  Under FastV or DART the prompts run up to the drop layer once
        (:class:`~studylib.models.shared_in_llm.InLLMPrefixes`) and each step runs the prompt's last
        token and the generated ones on them; otherwise each step re-runs the whole sequence."""
        visual, indices = self._visual_sequence(tokens, keep)
        check_rows(prompts, visual)
        prefixes = self._in_llm_prefixes(prompts, None, tokens, visual, indices, in_llm, in_llm_k, every_row=True)
        if prefixes is None:
            return lambda generated: self._last_logits(prompts, tokens, keep, in_llm, in_llm_k, suffixes=generated)

        def step(generated):
            logits, chosen = prefixes.logits(generated)
            return logits, indices.gather(1, chosen.to(indices.device))
        return step

    def _in_llm_prefixes(self, prompts, suffixes, tokens, visual, indices, in_llm, k, every_row=False):
        """The prompts (with ``suffixes``) run once up to FastV's or DART's drop layer
        (:class:`~studylib.models.shared_in_llm.InLLMPrefixes`), or ``None`` where the single forward
        applies: no in-LLM pruner or another one, prefix sharing off, or no prefix to share."""
        if in_llm is None or not self._share_prefixes or not shares_prefix(in_llm):
            return None
        validate_budget(k, len(visual[0].patch_slots))
        return InLLMPrefixes.build(self, self._prompt_rows(prompts, suffixes), tokens.image_keys, visual, indices,
                                   in_llm, k, every_row=every_row)

    @torch.inference_mode()
    def _generate_without_cache(self, prompts, tokens, keep, max_new_tokens, in_llm, in_llm_k):
        """Greedy decoding that re-prunes at every step (in-LLM pruning): (texts, first-step
        logits, (B, K) tokens kept at the first step)."""
        eos = self.tokenizer.eos_token_id
        generated: list[list[int]] = [[] for _ in prompts]
        finished = [False] * len(prompts)
        first_logits = first_kept = None
        step = self._in_llm_step(prompts, tokens, keep, in_llm, in_llm_k)
        for _ in range(max_new_tokens):
            logits, kept = step(generated)
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


def check_rows(prompts: Sequence[str], visual: Sequence) -> None:
    if not prompts:
        raise ValueError("the prompt batch is empty; pass at least one prompt")
    if len(prompts) != len(visual):
        raise ValueError(f"{len(prompts)} prompts but visual tokens for {len(visual)} images; "
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
