"""Loading LLaVA checkpoints: a local directory, a hub id, the shipped toy, or a tiny random model.

Only the vision tower runs eager attention (the [CLS] attention row must be materialised);
the language model keeps SDPA.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import (AutoProcessor, CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                          LlavaForConditionalGeneration, LlavaProcessor)

from studylib.models.prompts import IMAGE_PLACEHOLDER
from studylib.toy import model as toy

ATTENTION = {"vision_config": "eager", "text_config": "sdpa", "": "sdpa"}
REPO_ROOT = Path(__file__).resolve().parents[3]
TOY_MODEL_DIR = REPO_ROOT / "data" / "toy-model"
TOY_MODEL_NAME = "toy"
TINY_RANDOM_NAME = "tiny-random"


class ModelNotFoundError(FileNotFoundError):
    """The checkpoint is neither a local directory nor reachable on the hub."""


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name and Path(name).expanduser().exists()


def resolve_checkpoint(name_or_path: str | os.PathLike) -> str:
    """``"toy"`` -> the shipped toy checkpoint; an existing directory -> itself; else a hub id."""
    name = str(name_or_path)
    if name == TOY_MODEL_NAME:
        if not (TOY_MODEL_DIR / "config.json").exists():
            raise ModelNotFoundError(
                f"the toy checkpoint is missing from {TOY_MODEL_DIR}; restore it from git "
                f"(git checkout -- data/toy-model) or retrain it with: python scripts/train_toy.py")
        return str(TOY_MODEL_DIR)
    path = Path(name).expanduser()
    if _looks_like_path(name) or path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"no LLaVA checkpoint at {path} (expected a directory with config.json, "
                f"model weights and the processor files); check the path, or download one with: "
                f"huggingface-cli download llava-hf/llava-1.5-7b-hf --local-dir {path}")
        return str(path)
    return name


def load_model(name_or_path: str | os.PathLike = TOY_MODEL_NAME, device: str | torch.device = "cpu",
               dtype: torch.dtype | str = torch.float32):
    """Load ``(model, processor)`` in eval mode.

    ``name_or_path``: ``"toy"``, ``"tiny-random"`` (random weights, LLaVA-1.5 geometry), a
    local checkpoint directory, or a hub id such as ``llava-hf/llava-1.5-7b-hf``.  With no network, a hub id that is not in the local cache
    fails with a message naming the directory to download it to.
    """
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if str(name_or_path) == TINY_RANDOM_NAME:
        processor = tiny_random_processor()
        return tiny_random_llava(processor.tokenizer).to(device, dtype), processor
    source = resolve_checkpoint(name_or_path)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        model = LlavaForConditionalGeneration.from_pretrained(
            source, dtype=dtype, attn_implementation=ATTENTION, local_files_only=offline)
        processor = AutoProcessor.from_pretrained(source, local_files_only=offline)
    except OSError as error:
        target = Path("models") / source.split("/")[-1]
        raise ModelNotFoundError(
            f"could not load {source!r}: it is not a local directory and the hub is unreachable "
            f"({str(error).splitlines()[0]}). On a machine with network run: "
            f"huggingface-cli download {source} --local-dir {target} ; then pass model='{target}'."
        ) from error
    return model.to(device).eval(), processor


def tiny_random_llava(tokenizer, seed: int = 0, image_size: int = 336, patch_size: int = 14,
                      vision_layers: int = 3, text_layers: int = 3) -> LlavaForConditionalGeneration:
    """A randomly initialised LLaVA with LLaVA-1.5's geometry (336 px, patch 14 -> 24x24 = 576
    tokens) and CLIP-L / Llama-7B shape *ratios* at tiny width (head dim 16, MLP 4x / 2.7x),
    so that the 7B code path runs in tests without weights."""
    vision = CLIPVisionConfig(image_size=image_size, patch_size=patch_size, hidden_size=64,
                              intermediate_size=256, num_hidden_layers=vision_layers,
                              num_attention_heads=4, projection_dim=64)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=172,
                       num_hidden_layers=text_layers, num_attention_heads=4, num_key_value_heads=4,
                       max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER),
                         image_seq_length=(image_size // patch_size) ** 2, vision_feature_layer=-2,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu",
                         tie_word_embeddings=False)
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration._from_config(config, attn_implementation=ATTENTION).eval()


def tiny_random_processor(image_size: int = 336, patch_size: int = 14):
    """The toy's word-level tokenizer with a CLIP image processor at LLaVA-1.5's 336 px."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=list(toy.CLIP_MEAN), image_std=list(toy.CLIP_STD))
    return LlavaProcessor(image_processor=image_processor, tokenizer=toy.build_tokenizer(),
                          patch_size=patch_size, vision_feature_select_strategy="default",
                          num_additional_image_tokens=1)
