"""Tiny randomly initialised models of every family, built from configs (no download).

They run the real code paths of the 7B models in tests and in notebooks on a CPU:

* ``tiny-random`` -- LLaVA-1.5 geometry (336 px, patch 14: 24 x 24 = 576 tokens);
* ``tiny-random-llava-next`` -- LLaVA-NeXT anyres at a third of the size: 112 px tiles of
  8 x 8 patches, pinpoints 112x224 / 224x112 / 224x224 (N <= 64 + 256 = 320 patch tokens plus
  one newline token per high-resolution row);
* ``tiny-random-qwen2.5-vl`` -- Qwen2.5-VL with 14 px patches, 2x2 merger, 56 px windows,
  full attention in blocks 1 and 3 (the last), images resized to 224^2..448^2 pixels
  (N = 64..256 merged tokens), M-RoPE sections (2, 3, 3) of a 16-wide head.

Text: the toy's word-level vocabulary plus each family's special tokens and template words
(LLaVA: ``<s>`` BOS, ``<image>``; Qwen: no BOS, ``<|im_start|>`` ... ``<|image_pad|>``), with the
family's chat template.  Widths are tiny (64), shape ratios follow the 7B models.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                          LlavaForConditionalGeneration, LlavaNextConfig, LlavaNextForConditionalGeneration,
                          LlavaNextImageProcessorPil, LlavaNextProcessor, LlavaProcessor, PreTrainedTokenizerFast,
                          Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                          Qwen2VLImageProcessorPil)

from studylib.models import prompts
from studylib.toy import model as toy

#: attention kernels: eager only where a [CLS] attention row must be materialised (CLIP towers)
ATTENTION = {"vision_config": "eager", "text_config": "sdpa", "": "sdpa"}
TINY_RANDOM_NAME = "tiny-random"
TINY_LLAVA_NEXT_NAME = "tiny-random-llava-next"
TINY_QWEN_NAME = "tiny-random-qwen2.5-vl"
#: decoder layers of every tiny model's language model
TINY_TEXT_LAYERS = 3

NEXT_TILE, NEXT_PINPOINTS = 112, [[112, 224], [224, 112], [224, 224]]
QWEN_MIN_PIXELS, QWEN_MAX_PIXELS = 224 * 224, 448 * 448
QWEN_SPECIALS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                 "<|video_pad|>", "<|endoftext|>")
QWEN_TEMPLATE_WORDS = "system You are a helpful assistant. user"

#: vicuna_v1 as a chat template (LLaVA's own evaluation prompt, prompts.build_prompt)
VICUNA_TEMPLATE = (
    prompts.SYSTEM + " {% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %} {% else %}ASSISTANT: {{ message['content'][0]['text'] }}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
#: Qwen2.5-VL's ChatML layout (system line, vision block, ``<|im_start|>assistant\\n``)
QWEN_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


class ImageQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor without its video processor (which needs torchvision); images and
    text are processed exactly as by the full processor."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


def word_tokenizer(specials: tuple[str, ...], extra_words: str = "", bos: bool = True, **tokens) -> PreTrainedTokenizerFast:
    """The toy's word-level tokenizer with more special tokens and words (left padding)."""
    words = toy.toy_vocabulary()
    words += [w for w in dict.fromkeys(extra_words.replace(".", " .").split()) if w not in words]
    words += [s for s in specials if s not in words]
    vocab = {w: i for i, w in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.add_special_tokens(list(toy.SPECIAL_TOKENS) + list(specials))
    if bos:
        core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                            special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", padding_side="left", **tokens)


def _clip_vision(image_size: int, layers: int) -> CLIPVisionConfig:
    return CLIPVisionConfig(image_size=image_size, patch_size=14, hidden_size=64, intermediate_size=256,
                            num_hidden_layers=layers, num_attention_heads=4, projection_dim=64)


def _llama_text(tokenizer, layers: int) -> LlamaConfig:
    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=172, num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)


def _built(model_class, config, seed: int):
    torch.manual_seed(seed)
    return model_class._from_config(config, attn_implementation=ATTENTION).eval()


def tiny_random_llava(tokenizer, seed: int = 0, image_size: int = 336, patch_size: int = 14,
                      vision_layers: int = 3, text_layers: int = TINY_TEXT_LAYERS) -> LlavaForConditionalGeneration:
    """A randomly initialised LLaVA with LLaVA-1.5's geometry (336 px, patch 14 -> 24x24 = 576
    tokens) and CLIP-L / Llama-7B shape *ratios* at tiny width (head dim 16, MLP 4x / 2.7x),
    so that the 7B code path runs in tests without weights."""
    vision = _clip_vision(image_size, vision_layers)
    vision.patch_size = patch_size
    config = LlavaConfig(vision_config=vision, text_config=_llama_text(tokenizer, text_layers),
                         image_token_index=tokenizer.convert_tokens_to_ids(prompts.IMAGE_PLACEHOLDER),
                         image_seq_length=(image_size // patch_size) ** 2, vision_feature_layer=-2,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu",
                         tie_word_embeddings=False)
    return _built(LlavaForConditionalGeneration, config, seed)


def tiny_random_processor(image_size: int = 336, patch_size: int = 14):
    """The toy's word-level tokenizer with a CLIP image processor at LLaVA-1.5's 336 px."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=list(toy.CLIP_MEAN), image_std=list(toy.CLIP_STD))
    return LlavaProcessor(image_processor=image_processor, tokenizer=toy.build_tokenizer(),
                          patch_size=patch_size, vision_feature_select_strategy="default",
                          num_additional_image_tokens=1)


def tiny_random_llava_next(seed: int = 0, tokenizer=None) -> tuple[LlavaNextForConditionalGeneration, LlavaNextProcessor]:
    """Tiny LLaVA-NeXT (module docstring) and its processor (vicuna_v1 chat template); another
    tokenizer (with ``<image>`` and a pad token) may replace the toy's."""
    tokenizer = tokenizer or toy.build_tokenizer()
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": NEXT_TILE}, crop_size={"height": NEXT_TILE, "width": NEXT_TILE},
        image_grid_pinpoints=NEXT_PINPOINTS, image_mean=list(toy.CLIP_MEAN), image_std=list(toy.CLIP_STD))
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=VICUNA_TEMPLATE)
    config = LlavaNextConfig(vision_config=_clip_vision(NEXT_TILE, 3), text_config=_llama_text(tokenizer, TINY_TEXT_LAYERS),
                             image_token_index=tokenizer.convert_tokens_to_ids(prompts.IMAGE_PLACEHOLDER),
                             image_grid_pinpoints=NEXT_PINPOINTS, vision_feature_layer=-2,
                             vision_feature_select_strategy="default", tie_word_embeddings=False)
    return _built(LlavaNextForConditionalGeneration, config, seed), processor


def tiny_qwen_tokenizer() -> PreTrainedTokenizerFast:
    return word_tokenizer(QWEN_SPECIALS, QWEN_TEMPLATE_WORDS, bos=False, eos_token="<|im_end|>",
                          pad_token="<|endoftext|>",
                          extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                                                "vision_start_token": "<|vision_start|>",
                                                "vision_end_token": "<|vision_end|>"})


def tiny_random_qwen2_5_vl(seed: int = 0, tokenizer=None) -> tuple[Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor]:
    """Tiny Qwen2.5-VL (module docstring) and its processor (ChatML template); another tokenizer
    with Qwen's special tokens may replace the word-level one."""
    tokenizer = tokenizer or tiny_qwen_tokenizer()
    image_processor = Qwen2VLImageProcessorPil(min_pixels=QWEN_MIN_PIXELS, max_pixels=QWEN_MAX_PIXELS, patch_size=14,
                                               merge_size=2, temporal_patch_size=2,
                                               image_mean=list(toy.CLIP_MEAN), image_std=list(toy.CLIP_STD))
    processor = ImageQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                         chat_template=QWEN_TEMPLATE)
    ids = {name: tokenizer.convert_tokens_to_ids(f"<|{name.removesuffix('_token_id')}|>")
           for name in ("image_pad", "video_pad", "vision_start", "vision_end")}
    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=172, num_hidden_layers=TINY_TEXT_LAYERS,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                pad_token_id=tokenizer.pad_token_id, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                tie_word_embeddings=False)
    vision = dict(depth=4, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1, 3])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["image_pad"],
                              video_token_id=ids["video_pad"], vision_start_token_id=ids["vision_start"],
                              vision_end_token_id=ids["vision_end"], tie_word_embeddings=False)
    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration._from_config(config, attn_implementation="sdpa").eval(), processor


def tiny_num_tokens(name: str) -> int:
    """N of the variable-N tiny models (their most tokens per image) without building them."""
    if name == TINY_LLAVA_NEXT_NAME:
        return (NEXT_TILE // 14) ** 2 + max(h * w for h, w in NEXT_PINPOINTS) // 14**2
    if name == TINY_QWEN_NAME:
        return QWEN_MAX_PIXELS // 28**2
    raise KeyError(name)


def tiny_random(name: str):
    """``(model, processor)`` of a tiny random model by name (module docstring)."""
    if name == TINY_RANDOM_NAME:
        processor = tiny_random_processor()
        return tiny_random_llava(processor.tokenizer), processor
    if name == TINY_LLAVA_NEXT_NAME:
        return tiny_random_llava_next()
    if name == TINY_QWEN_NAME:
        return tiny_random_qwen2_5_vl()
    raise KeyError(name)


TINY_RANDOM_NAMES = (TINY_RANDOM_NAME, TINY_LLAVA_NEXT_NAME, TINY_QWEN_NAME)

__all__ = ["ATTENTION", "ImageQwen2_5_VLProcessor", "TINY_LLAVA_NEXT_NAME", "TINY_QWEN_NAME", "TINY_RANDOM_NAME",
           "TINY_RANDOM_NAMES", "TINY_TEXT_LAYERS", "VICUNA_TEMPLATE", "QWEN_TEMPLATE", "tiny_qwen_tokenizer", "tiny_random",
           "tiny_num_tokens", "tiny_random_llava", "tiny_random_llava_next", "tiny_random_processor",
           "tiny_random_qwen2_5_vl",
           "word_tokenizer"]
