"""What a store cell is keyed by: everything that can change a stored number.

* **model** (:func:`model_identity`): a tiny random model (``"tiny-random"``,
  ``"tiny-random-llava-next"``, ``"tiny-random-qwen2.5-vl"``) -> its name (its code is in the
  code digest), so two families never share cells; a checkpoint directory (``"toy"`` resolves
  to ``data/toy-model``) -> the sha256 of every file in it but hidden and ``.md`` files, in full (:mod:`studylib.sweep.digests`
  caches it by path, size, mtime, ctime and inode), so the same weights elsewhere share cells
  and any changed byte gives new ones; a hub id -> the files of its snapshot in the local
  Hugging Face cache (downloaded when missing and the hub is reachable; else unresolved,
  ``{"hub_id": id}``, and only stored cells whose other inputs match are read); an adapter
  instance -> the identity of the directory it was loaded from when its in-memory weights
  equal what that directory loads to (the sha256 of the directory's state dict as loaded in the
  adapter's dtype is computed once and cached), else the sha256 of its in-memory state dict.
* **options** (:func:`canonical_options`): the loader's defaults filled in, so
  ``{"split": "all", "n_images": 500}`` and ``{"n_images": 500}`` share a cell.
* **questions**: (qid, image, task, text, answer, choices, hint, split) of every question.
* **prompts**: the rendered prompt and the verbalizer words of every question, so a changed
  template or answer instruction gives new cells even in memory.
* **images** (:func:`images_digest`): the content of every image of the cell: the bytes of
  the file of a folder-backed dataset (cached like weights), the encoded bytes of a parquet
  dataset, else (generated images, e.g. the toy world rendered from seeds) the decoded pixels
  (mode, size, RGB bytes) of what the loader returns.
* **objects** (caption cells): ground-truth objects of the cell's images and the CHAIR
  vocabulary name.
* **code** (:func:`key_fields`, :func:`config_fields`):
  :func:`studylib.sweep.digests.code_digest` of what ran: ``code`` of the scoring path (the
  module :mod:`studylib.sweep.scoring` and all it imports: adapter, prompts, tokens, metrics),
  ``dataset_code`` of the dataset's loader, ``pruner_code`` of the config's pruner (a plug-in's
  included), each from its syntax tree without comments or docstrings.
* **libraries**: the versions of torch and transformers, whose code computes the numbers too.

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
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import transformers
from huggingface_hub import snapshot_download
from transformers import AutoConfig
from transformers.image_processing_base import ImageProcessingMixin

import studylib.data as data_registry
from studylib.data._files import BytesImages, FolderImages
from studylib.data.records import Dataset, Question
from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter
from studylib.models.families import llava, llava_next, qwen2_5_vl
from studylib.models.loading import (TINY_RANDOM_NAMES, CheckpointError, ModelNotFoundError, check_checkpoint_dir,
                                     load_model, resolve_checkpoint, tiny_random_llava)
from studylib.models.tiny import TINY_LLAVA_NEXT_NAME, TINY_QWEN_NAME, TINY_TEXT_LAYERS, tiny_num_tokens
from studylib.pruners import pruner_info
from studylib.sweep import scoring
from studylib.sweep.digests import canonical, cached_value, code_digest, file_digest, files_digests, state_digest
from studylib.sweep.grid import Config, StudyParameterError
from studylib.sweep.scoring import CAPTION_TASK
from studylib.sweep.store import STORE_VERSION


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
    return _from_config(name, config_num_tokens)


def _resolved(name: str, check_files: bool = False) -> str:
    """:func:`resolve_checkpoint` (and, with ``check_files``, :func:`check_checkpoint_dir` of a
    local directory) with their errors as the parameter error of ``model``."""
    try:
        source = resolve_checkpoint(name)
        if check_files and Path(source).is_dir():
            check_checkpoint_dir(Path(source))
        return source
    except (ModelNotFoundError, CheckpointError) as error:
        raise StudyParameterError(f"model: {error}") from None


def _from_config(name: str, read) -> int:
    """``read(source)`` of a resolved, checked checkpoint; an unreadable config is a parameter
    error."""
    source = _resolved(name, check_files=True)
    try:
        return read(source)
    except (OSError, ValueError, AttributeError, KeyError) as error:
        raise StudyParameterError(
            f"model: cannot read the config of {name!r} ({str(error).splitlines()[0]}); pass 'toy', "
            f"'tiny-random', a local LLaVA checkpoint directory, or a hub id available offline "
            f"(huggingface-cli download {name} --local-dir models/{name.split('/')[-1]})") from None


def config_num_layers(source: str) -> int:
    """Decoder layers of a checkpoint's language model, from its config."""
    return AutoConfig.from_pretrained(source).get_text_config().num_hidden_layers


def model_num_layers(model: str | os.PathLike | LlavaAdapter) -> int:
    """Decoder layers of ``model``'s language model (what an in-LLM pruner's ``layer`` is
    checked against), read from its config; no weights are loaded."""
    if isinstance(model, LlavaAdapter):
        return model.model.config.get_text_config().num_hidden_layers
    name = str(model)
    if name in TINY_RANDOM_NAMES:
        return TINY_TEXT_LAYERS
    return _from_config(name, config_num_layers)


def _directory_identity(path: Path) -> dict:
    files = [c for c in sorted(path.iterdir()) if c.is_file() and not c.name.startswith(".") and c.suffix != ".md"]
    return {"checkpoint_files": dict(zip((f.name for f in files), files_digests(files)))}


def _hub_identity(name: str) -> dict:
    """The files of the hub snapshot, downloaded now unless ``HF_HUB_OFFLINE`` is set (loading
    the model would download it anyway); ``{"hub_id": name}`` when it cannot be had."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    for local_only in (True, False)[: 1 if offline else 2]:
        try:
            return _directory_identity(Path(snapshot_download(name, local_files_only=local_only)))
        except Exception:  # noqa: BLE001 - not cached / unreachable: huggingface_hub raises many types
            continue
    return {"hub_id": name}


def _adapter_identity(adapter: LlavaAdapter) -> dict:
    memory = state_digest(adapter.model)
    source = getattr(adapter.model.config, "_name_or_path", "") or ""
    if source and (Path(source) / "config.json").is_file():
        files = _directory_identity(Path(source))
        dtype = str(adapter.model.dtype).removeprefix("torch.")
        name = f"loaded-state:{hashlib.sha256(canonical(files).encode()).hexdigest()}:{dtype}"
        reference = cached_value(name, {"transformers": transformers.__version__},
                                 lambda: state_digest(load_model(source, device="cpu", dtype=dtype)[0]))
        if reference == memory:
            return files
    return {"parameters_sha256": memory}


def model_identity(model: str | os.PathLike | LlavaAdapter) -> dict:
    """What the store keys a model by (module docstring)."""
    if isinstance(model, LlavaAdapter):
        return _adapter_identity(model)
    name = str(model)
    if name in TINY_RANDOM_NAMES:
        return {"builtin": name}
    source = _resolved(name)
    if Path(source).is_dir():
        return _directory_identity(Path(source))
    return _hub_identity(source)


def display_name(model) -> str:
    """The ``model`` column's default value: the name passed, or an adapter's checkpoint path."""
    if isinstance(model, LlavaAdapter):
        return getattr(model.model.config, "_name_or_path", "") or "adapter"
    return str(model)


def canonical_options(dataset: str, options: dict) -> dict:
    """``options`` with the loader's defaults filled in (sorted by name); the options must bind."""
    bound = inspect.signature(data_registry.dataset_loader(dataset)).bind(**options)
    bound.apply_defaults()
    return dict(sorted(bound.arguments.items()))


def _sha(parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


def questions_digest(questions: Sequence[Question]) -> str:
    """sha256 of the (qid, image, task, text, answer, choices, hint, split) of ``questions``."""
    return _sha(canonical([q.qid, q.image_key, q.task, q.text, q.answer, list(q.choices), q.hint, q.split])
                for q in questions)


def prompts_digest(questions: Sequence[Question]) -> str:
    """sha256 of each question's rendered prompt and verbalizer (as the scoring path builds them)."""
    return _sha(canonical([prompts.build_prompt(q), None if q.task == CAPTION_TASK else prompts.verbalizer(q)])
                for q in questions)


def _pixels(image) -> bytes:
    return f"{image.mode}:{image.size};".encode() + image.tobytes()


def image_digests(dataset: Dataset, keys: Sequence[str]) -> dict[str, str]:
    """sha256 of the content of each image of ``keys`` (module docstring)."""
    store = dataset.load_image
    if isinstance(store, FolderImages):
        paths = [store.root / key for key in keys]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise StudyParameterError(f"dataset {dataset.name!r}: image file(s) {missing[:3]} not found; restore them "
                                      f"or fix the images path in dataset_options")
        digests = files_digests(paths)
    elif isinstance(store, BytesImages):
        digests = [hashlib.sha256(store.images[key]).hexdigest() for key in keys]
    else:
        digests = [hashlib.sha256(_pixels(store(key))).hexdigest() for key in keys]
    return dict(zip(keys, digests))


def images_digest(digests: dict[str, str]) -> str:
    """One sha256 of the per-image digests of :func:`image_digests` (in their order)."""
    return _sha(f"{key}={digest}" for key, digest in digests.items())


def objects_digest(dataset: Dataset, keys: Sequence[str]) -> str:
    """sha256 of the ground-truth objects of ``keys`` and the CHAIR vocabulary (caption cells)."""
    objects = {key: sorted(dataset.objects[key]) if key in dataset.objects else None for key in keys}
    return _sha([dataset.chair_vocabulary, canonical(objects)])


def library_versions() -> dict[str, str]:
    """The versions of the libraries whose code computes stored numbers (torch, transformers)."""
    return {"torch": torch.__version__, "transformers": transformers.__version__}


def key_fields(identity: dict, dtype: str, dataset: str, options: dict, limit: int | None, data: Dataset,
               questions: list[Question], max_new_tokens: int, images: dict[str, str]) -> dict:
    """The fields every cell of a sweep shares (all but :func:`config_fields`; module docstring
    and :mod:`studylib.sweep.run`); ``images``: :func:`image_digests` of the questions' images."""
    fields = {"store": STORE_VERSION, "code": code_digest(scoring),
              "dataset_code": code_digest(data_registry.dataset_loader(dataset)), "libraries": library_versions(),
              "model": identity, "dtype": dtype, "dataset": dataset, "options": canonical_options(dataset, options),
              "limit": None if limit is None or limit >= len(data.image_keys()) else limit,
              "questions": questions_digest(questions), "prompts": prompts_digest(questions),
              "images": images_digest(images)}
    if any(q.task == CAPTION_TASK for q in questions):
        fields["max_new_tokens"] = max_new_tokens
        fields["objects"] = objects_digest(data, images)
    return fields


def config_fields(config: Config | str) -> dict:
    """The fields of one cell besides :func:`key_fields`: the config and its pruner's code."""
    config = Config.parse(config)
    return {"config": str(config), "pruner_code": code_digest(pruner_info(config.method).fn)}


__all__ = ["canonical", "canonical_options", "config_fields", "key_fields", "library_versions", "config_num_layers", "config_num_tokens", "display_name", "file_digest", "image_digests",
           "images_digest", "model_identity", "model_num_layers", "model_num_tokens", "objects_digest", "prompts_digest", "questions_digest"]
