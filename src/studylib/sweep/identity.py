"""What a store cell is keyed by: the model's identity, the questions' digest, canonical JSON.

Model identity: a tiny random model (``"tiny-random"``, ``"tiny-random-llava-next"``,
``"tiny-random-qwen2.5-vl"``) -> its name, so two families never share cells; a local checkpoint directory (``"toy"``
resolves to ``data/toy-model``) -> the sha256 of every file in it but hidden and ``.md`` files
(files over 256 MiB: size + sha256 of their first and last 8 MiB), so the same weights under
another path share cells and retrained weights never reuse stale ones; a hub id -> the id; an
adapter instance -> the identity of the directory it was loaded from, else the sha256 of its
parameters.  ``questions_digest`` is a sha256 of the (qid, image, task, text, answer, choices,
hint, split) of the questions of a cell, so edited data files give a new cell.

N (:func:`model_num_tokens`, the largest budget a sweep accepts): LLaVA-1.5 -> the fixed
``(image_size / patch)^2``; LLaVA-NeXT -> the most patch tokens any image can get (base tile +
largest pinpoint grid, newline tokens not counted: 2,880 for ``llava-v1.6-*``); Qwen2.5-VL ->
the most merged tokens the processor allows (``max_pixels / 28^2``).  For the two variable-N
families a budget K above an image's own N keeps all of that image's tokens (its rows show
``n_kept < k``), and ``full`` at this N keeps every token of every image.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig
from transformers.image_processing_base import ImageProcessingMixin

from studylib.data.records import Question

from studylib.models.adapter import LlavaAdapter
from studylib.models.families import llava, llava_next, qwen2_5_vl
from studylib.models.loading import TINY_RANDOM_NAMES, ModelNotFoundError, resolve_checkpoint, tiny_random_llava
from studylib.models.tiny import TINY_LLAVA_NEXT_NAME, TINY_QWEN_NAME, tiny_num_tokens
from studylib.sweep.grid import StudyParameterError

LARGE_FILE = 256 * 2**20
EDGE_BYTES = 8 * 2**20


def canonical(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): the text that store keys hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def _tiny_random_tokens(name: str) -> int:
    if name in (TINY_LLAVA_NEXT_NAME, TINY_QWEN_NAME):
        return tiny_num_tokens(name)
    defaults = inspect.signature(tiny_random_llava).parameters
    return (defaults["image_size"].default // defaults["patch_size"].default) ** 2


def config_num_tokens(source: str) -> int:
    """N of a checkpoint from its config files (no weights loaded; module docstring)."""
    config = AutoConfig.from_pretrained(source)
    if config.model_type == "llava_next":
        return llava_next.num_tokens(config)
    if config.model_type == "qwen2_5_vl":
        return qwen2_5_vl.num_tokens(config, ImageProcessingMixin.get_image_processor_dict(source)[0])
    return llava.num_tokens(config)


def model_num_tokens(model: str | os.PathLike | LlavaAdapter) -> int:
    """N, the number of visual tokens of ``model``, read from its config (no weights loaded);
    the maximum over images for LLaVA-NeXT and Qwen2.5-VL (module docstring).

    Raises :class:`StudyParameterError` when the model cannot be found."""
    if isinstance(model, LlavaAdapter):
        return model.num_patches
    name = str(model)
    if name in TINY_RANDOM_NAMES:
        return _tiny_random_tokens(name)
    try:
        source = resolve_checkpoint(name)
    except ModelNotFoundError as error:
        raise StudyParameterError(f"model: {error}") from None
    try:
        return config_num_tokens(source)
    except (OSError, ValueError, AttributeError, KeyError) as error:
        raise StudyParameterError(
            f"model: cannot read the config of {name!r} ({str(error).splitlines()[0]}); pass 'toy', "
            f"'tiny-random', a local LLaVA checkpoint directory, or a hub id available offline "
            f"(huggingface-cli download {name} --local-dir models/{name.split('/')[-1]})") from None


@lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= LARGE_FILE:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
        else:
            digest.update(f"size={size};".encode())
            digest.update(handle.read(EDGE_BYTES))
            handle.seek(size - EDGE_BYTES)
            digest.update(handle.read(EDGE_BYTES))
    return digest.hexdigest()


def _directory_identity(path: Path) -> dict:
    files = {}
    for child in sorted(path.iterdir()):
        if child.is_file() and not child.name.startswith(".") and child.suffix != ".md":
            stat = child.stat()
            files[child.name] = _file_digest(str(child), stat.st_size, stat.st_mtime_ns)
    return {"checkpoint_files": files}


def _parameter_identity(module: torch.nn.Module) -> dict:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return {"parameters_sha256": digest.hexdigest()}


def model_identity(model: str | os.PathLike | LlavaAdapter) -> dict:
    """What the store keys a model by (module docstring)."""
    if isinstance(model, LlavaAdapter):
        source = getattr(model.model.config, "_name_or_path", "") or ""
        if source and (Path(source) / "config.json").is_file():
            return _directory_identity(Path(source))
        return _parameter_identity(model.model)
    name = str(model)
    if name in TINY_RANDOM_NAMES:
        return {"builtin": name}
    try:
        source = resolve_checkpoint(name)
    except ModelNotFoundError as error:
        raise StudyParameterError(f"model: {error}") from None
    if Path(source).is_dir():
        return _directory_identity(Path(source))
    return {"hub_id": source}


def display_name(model) -> str:
    """The ``model`` column's default value: the name passed, or an adapter's checkpoint path."""
    if isinstance(model, LlavaAdapter):
        return getattr(model.model.config, "_name_or_path", "") or "adapter"
    return str(model)


def questions_digest(questions: Sequence[Question]) -> str:
    digest = hashlib.sha256()
    for q in questions:
        digest.update(canonical([q.qid, q.image_key, q.task, q.text, q.answer, list(q.choices), q.hint,
                                 q.split]).encode())
    return digest.hexdigest()


__all__ = ["canonical", "config_num_tokens", "display_name", "model_identity", "model_num_tokens", "questions_digest"]
