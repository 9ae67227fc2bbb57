"""Loading checkpoints of every family: a local directory, a hub id, the shipped toy, or a tiny
random model (``tiny-random``, ``tiny-random-llava-next``, ``tiny-random-qwen2.5-vl``:
:mod:`studylib.models.tiny`).

The model class follows the checkpoint's ``model_type`` (``llava``, ``llava_next``,
``qwen2_5_vl``).  In the LLaVA families only the CLIP tower runs eager attention (the [CLS]
attention row must be materialised); everything else keeps SDPA.  Qwen2.5-VL runs SDPA
throughout (its saliency is recomputed from one block's projections).  Where torchvision is
missing, Qwen2.5-VL's processor is rebuilt without its video half
(:class:`~studylib.models.tiny.ImageQwen2_5_VLProcessor`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import (AutoConfig, AutoProcessor, AutoTokenizer, LlavaForConditionalGeneration,
                          LlavaNextForConditionalGeneration, Qwen2_5_VLForConditionalGeneration,
                          Qwen2VLImageProcessorPil)

from studylib.models.tiny import (ATTENTION, TINY_LLAVA_NEXT_NAME, TINY_QWEN_NAME, TINY_RANDOM_NAME,
                                  TINY_RANDOM_NAMES, ImageQwen2_5_VLProcessor, tiny_random, tiny_random_llava,
                                  tiny_random_processor)

REPO_ROOT = Path(__file__).resolve().parents[3]
TOY_MODEL_DIR = REPO_ROOT / "data" / "toy-model"
TOY_MODEL_NAME = "toy"
#: model_type -> (model class, attention implementation)
MODEL_CLASSES = {
    "llava": (LlavaForConditionalGeneration, ATTENTION),
    "llava_next": (LlavaNextForConditionalGeneration, ATTENTION),
    "qwen2_5_vl": (Qwen2_5_VLForConditionalGeneration, "sdpa"),
}


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


def model_class(config) -> tuple[type, object]:
    """(model class, attention implementation) for a checkpoint's config."""
    try:
        return MODEL_CLASSES[config.model_type]
    except KeyError:
        raise ValueError(f"unsupported model_type {config.model_type!r}; supported: "
                         f"{', '.join(MODEL_CLASSES)}") from None


def load_processor(source: str, offline: bool):
    """The checkpoint's processor; Qwen2.5-VL's without torchvision is rebuilt image-only."""
    try:
        return AutoProcessor.from_pretrained(source, local_files_only=offline)
    except ImportError:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(source, local_files_only=offline)
        return ImageQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        chat_template=tokenizer.chat_template)


def load_model(name_or_path: str | os.PathLike = TOY_MODEL_NAME, device: str | torch.device = "cpu",
               dtype: torch.dtype | str = torch.float32):
    """Load ``(model, processor)`` in eval mode.

    ``name_or_path``: ``"toy"``, a tiny random model (``"tiny-random"`` with LLaVA-1.5's
    geometry, ``"tiny-random-llava-next"``, ``"tiny-random-qwen2.5-vl"``), a local checkpoint
    directory, or a hub id such as ``llava-hf/llava-1.5-7b-hf``,
    ``llava-hf/llava-v1.6-vicuna-7b-hf`` or ``Qwen/Qwen2.5-VL-7B-Instruct``.  With no network, a
    hub id that is not in the local cache fails with a message naming the directory to download
    it to.
    """
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if str(name_or_path) in TINY_RANDOM_NAMES:
        model, processor = tiny_random(str(name_or_path))
        return model.to(device, dtype), processor
    source = resolve_checkpoint(name_or_path)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        model_type, attention = model_class(AutoConfig.from_pretrained(source, local_files_only=offline))
        model = model_type.from_pretrained(source, dtype=dtype, attn_implementation=attention,
                                           local_files_only=offline)
        processor = load_processor(source, offline)
    except OSError as error:
        target = Path("models") / source.split("/")[-1]
        raise ModelNotFoundError(
            f"could not load {source!r}: it is not a local directory and the hub is unreachable "
            f"({str(error).splitlines()[0]}). On a machine with network run: "
            f"huggingface-cli download {source} --local-dir {target} ; then pass model='{target}'."
        ) from error
    return model.to(device).eval(), processor


__all__ = ["ATTENTION", "MODEL_CLASSES", "ModelNotFoundError", "REPO_ROOT", "TINY_LLAVA_NEXT_NAME", "TINY_QWEN_NAME",
           "TINY_RANDOM_NAME", "TINY_RANDOM_NAMES", "TOY_MODEL_DIR", "TOY_MODEL_NAME", "load_model", "load_processor",
           "model_class", "resolve_checkpoint", "tiny_random_llava", "tiny_random_processor"]
