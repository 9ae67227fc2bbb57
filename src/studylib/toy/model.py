"""The toy LLaVA: a tiny CLIP vision tower and a tiny Llama in stock Hugging Face classes.

Built from configs (no download) with a word-level tokenizer over the toy world's words.
``scripts/train_toy.py`` trains it; the checkpoint ships in ``data/toy-model``.
Shapes mirror LLaVA-1.5 as fractions: 96x96 images with 8-pixel patches give a 12x12 grid of
144 visual tokens (LLaVA: 24x24 = 576), so budgets 48/32/16/8 correspond to 192/128/64/32.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                          LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

from studylib.toy import world as tw
from studylib.models import prompts

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", prompts.IMAGE_PLACEHOLDER)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PATCH = 8


def toy_vocabulary() -> list[str]:
    """Every word the toy prompts, questions and answers use, sorted (special tokens first)."""
    world = tw.ToyWorld(tw.TRAIN_SEED_BASE, 200)
    texts = [prompts.SYSTEM, prompts.SHORT_ANSWER, prompts.LETTER_ANSWER, "USER: ASSISTANT:",
             "Context: A. B. C. D. Yes No yes no", tw.CAPTION_PROMPT, " ".join(tw.COUNT_WORDS),
             " ".join(tw.SHAPE_SYNONYMS.values())]
    for category in tw.CATEGORIES:
        texts.append(tw.existence_question(category))
    for scene in world.scenes:
        texts.append(tw.caption_of(scene))
        texts.extend(q for _, q, _ in tw.multiple_choice_candidates(scene))
    splitter = pre_tokenizers.Whitespace()
    words = {w for t in texts for w, _ in splitter.pre_tokenize_str(t)}
    return list(SPECIAL_TOKENS) + sorted(words - set(SPECIAL_TOKENS))


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer; ``<s>`` is prepended like Llama's BOS; special tokens are atomic."""
    vocab = {w: i for i, w in enumerate(toy_vocabulary())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", padding_side="left",
        extra_special_tokens={"image_token": prompts.IMAGE_PLACEHOLDER})


def build_config(tokenizer: PreTrainedTokenizerFast) -> LlavaConfig:
    vision = CLIPVisionConfig(image_size=tw.IMAGE_SIZE, patch_size=PATCH, hidden_size=96,
                              intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                              projection_dim=96)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=512,
                       num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                       max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       tie_word_embeddings=False)
    n_patches = (tw.IMAGE_SIZE // PATCH) ** 2
    return LlavaConfig(vision_config=vision, text_config=text,
                       image_token_index=tokenizer.convert_tokens_to_ids(prompts.IMAGE_PLACEHOLDER),
                       image_seq_length=n_patches, vision_feature_layer=-2,
                       vision_feature_select_strategy="default", projector_hidden_act="gelu",
                       tie_word_embeddings=False)


def build_processor(tokenizer: PreTrainedTokenizerFast) -> LlavaProcessor:
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": tw.IMAGE_SIZE}, crop_size={"height": tw.IMAGE_SIZE, "width": tw.IMAGE_SIZE},
        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1)


def build_untrained(seed: int = 0) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A freshly initialised toy model and its processor."""
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration._from_config(build_config(tokenizer), attn_implementation="sdpa")
    return model, build_processor(tokenizer)


def load_for_training(directory: str | Path) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A saved toy checkpoint set up exactly as :func:`build_untrained` sets up a fresh model
    (SDPA attention everywhere, float32, the processor built in code), to continue training it."""
    model = LlavaForConditionalGeneration.from_pretrained(directory, attn_implementation="sdpa",
                                                          dtype="float32")
    return model, build_processor(build_tokenizer())


def save(model: LlavaForConditionalGeneration, processor: LlavaProcessor, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
