"""Loading checkpoints of every family: a local directory, a hub id, the shipped toy, or a tiny
random model (``tiny-random``, ``tiny-random-llava-next``, ``tiny-random-qwen2.5-vl``:
:mod:`studylib.models.tiny`).

Names resolve offline first (:func:`resolve_checkpoint`): ``"toy"``, a tiny name, an existing
local directory (checked for its config, readable safetensors headers and tokenizer files), or
a hub id whose ``config.json`` is already in the local Hugging Face cache.  Anything else fails
at once, without touching the network, naming the closest known name and how to download it.
Devices and dtypes are checked before anything loads (:func:`check_device`, :func:`check_dtype`);
the loaded weights are checked for NaN and infinite values in one pass
(:func:`nonfinite_tensors`: one reduction per tensor on the device it lives on, no copy).

The model class follows the checkpoint's ``model_type`` (``llava``, ``llava_next``,
``qwen2_5_vl``).  In the LLaVA families only the CLIP tower runs eager attention (the [CLS]
attention row must be materialised); everything else keeps SDPA.  Qwen2.5-VL runs SDPA
throughout (its saliency is recomputed from one block's projections).  Where torchvision is
missing, Qwen2.5-VL's processor is rebuilt without its video half
(:class:`~studylib.models.tiny.ImageQwen2_5_VLProcessor`).
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
from pathlib import Path

import torch
import yaml
from huggingface_hub import constants as hub_constants
from huggingface_hub import try_to_load_from_cache
from safetensors import SafetensorError, safe_open
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


PROFILES_DIR = REPO_ROOT / "profiles"
#: dtype names a model may be loaded in
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: files of which a checkpoint directory needs at least one to build its tokenizer
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


class ModelNotFoundError(FileNotFoundError):
    """The checkpoint is neither a local directory nor in the local Hugging Face cache."""


class CheckpointError(ValueError):
    """A local checkpoint directory is incomplete or damaged; the message names the file."""


class ModelSettingError(ValueError):
    """An unusable device or dtype; the message names the parameter and the valid choices."""


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name and Path(name).expanduser().exists()


def cached_repo_ids() -> list[str]:
    """Hub ids with a folder in the local Hugging Face cache (``models--org--name``)."""
    cache = Path(hub_constants.HF_HUB_CACHE)
    if not cache.is_dir():
        return []
    return sorted(entry.name[len("models--"):].replace("--", "/") for entry in cache.iterdir()
                  if entry.name.startswith("models--"))


def profile_model_ids(directory: Path = PROFILES_DIR) -> list[str]:
    """The ``defaults.model`` of every profile (the names the study is run with)."""
    names = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            model = (yaml.safe_load(path.read_text()) or {}).get("defaults", {}).get("model")
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if isinstance(model, str):
            names.append(model)
    return names


def known_model_names() -> list[str]:
    """Names that resolve without a download: the toy, the tiny models, the profiles' models
    (where cached) and every cached hub id; the profiles' ids are listed as suggestions too."""
    return list(dict.fromkeys([TOY_MODEL_NAME, *TINY_RANDOM_NAMES, *profile_model_ids(), *cached_repo_ids()]))


def _suggestion(name: str) -> str:
    close = difflib.get_close_matches(name, known_model_names(), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def _in_hub_cache(name: str) -> bool:
    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def check_checkpoint_dir(path: Path) -> None:
    """A local checkpoint needs JSON files that parse (config, tokenizer, processor), weights
    whose safetensors headers parse, and a tokenizer file; else one :class:`CheckpointError`
    naming the file.  Reads the headers only, not the weights."""
    fix = f"re-download or re-copy the checkpoint into {path}"
    for file in sorted(path.glob("*.json")):
        try:
            json.loads(file.read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{file} is not valid JSON ({error}); {fix}") from None
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    if not weights:
        raise CheckpointError(f"no model weights (*.safetensors or *.bin) in {path}; {fix}")
    for file in (w for w in weights if w.suffix == ".safetensors"):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"weights file {file} is damaged ({error}); {fix}") from None
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(f"no tokenizer in {path} (expected one of {', '.join(TOKENIZER_FILES)}); {fix}")


def _local_checkpoint(path: Path) -> str:
    if not (path / "config.json").exists():
        raise ModelNotFoundError(
            f"no LLaVA checkpoint at {path} (expected a directory with config.json, "
            f"model weights and the processor files); check the path, or download one with: "
            f"huggingface-cli download llava-hf/llava-1.5-7b-hf --local-dir {path}")
    return str(path)


def resolve_checkpoint(name_or_path: str | os.PathLike) -> str:
    """``"toy"`` -> the shipped toy checkpoint; an existing directory with a ``config.json`` ->
    itself; a hub id in the local cache -> itself; anything else :class:`ModelNotFoundError` at
    once, with the closest known name and the download command (the network is never consulted
    here).  The files of a directory are checked by :func:`check_checkpoint_dir`."""
    name = str(name_or_path)
    if name == TOY_MODEL_NAME:
        if not (TOY_MODEL_DIR / "config.json").exists():
            raise ModelNotFoundError(
                f"the toy checkpoint is missing from {TOY_MODEL_DIR}; restore it from git "
                f"(git checkout -- data/toy-model) or retrain it with: python scripts/train_toy.py")
        return _local_checkpoint(TOY_MODEL_DIR)
    path = Path(name).expanduser()
    if _looks_like_path(name) or path.exists():
        return _local_checkpoint(path)
    if _in_hub_cache(name):
        return name
    target = Path("models") / name.split("/")[-1]
    raise ModelNotFoundError(
        f"model {name!r} is not 'toy', a tiny model, a local directory or a hub id in the local Hugging Face "
        f"cache ({hub_constants.HF_HUB_CACHE}); {_suggestion(name)}to use a hub model download it first: "
        f"huggingface-cli download {name} --local-dir {target} ; then pass model='{target}'")


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device`; ``"gpu"``, unknown names and CUDA without a GPU
    raise :class:`ModelSettingError`."""
    if isinstance(device, str) and device.strip().lower().startswith("gpu"):
        raise ModelSettingError(f"device={device!r} is not a torch device; use 'cuda' (or 'cuda:0') for a GPU, "
                                f"or 'cpu'")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelSettingError(f"device={device!r} is not a torch device; use 'cpu' or 'cuda'") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelSettingError(f"device={device!r} but torch.cuda.is_available() is False (no GPU or a CPU-only "
                                f"torch build); use device='cpu' with dtype='float32'")
    return resolved


def check_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """``dtype`` (a name in :data:`DTYPES` or a torch dtype) as a torch dtype; unknown names and
    float16 on a CPU raise :class:`ModelSettingError`."""
    resolved = DTYPES.get(dtype.removeprefix("torch.")) if isinstance(dtype, str) else dtype
    if resolved not in DTYPES.values():
        raise ModelSettingError(f"dtype={dtype!r} is not supported; choose one of {list(DTYPES)}")
    if resolved == torch.float16 and torch.device(device).type == "cpu":
        raise ModelSettingError("dtype='float16' on device 'cpu': CPU kernels do not support half precision for "
                                "these models; use dtype='float32' (or 'bfloat16') on the CPU, or device='cuda'")
    return resolved


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


def _load_error(source: str, error: Exception) -> Exception:
    """The one error a failed load is reported as: a damaged local checkpoint, an unreachable
    hub id, or (anything else) the original error."""
    first_line = (str(error).splitlines() or [""])[0]
    if Path(source).is_dir():
        return CheckpointError(f"the checkpoint in {source} cannot be loaded ({type(error).__name__}: {first_line}); "
                               f"a file in it is damaged or missing: re-download or re-copy the checkpoint")
    if isinstance(error, OSError):
        target = Path("models") / source.split("/")[-1]
        return ModelNotFoundError(
            f"could not load {source!r}: it is not a local directory and the hub is unreachable ({first_line}). "
            f"On a machine with network run: huggingface-cli download {source} --local-dir {target} ; then pass "
            f"model='{target}'.")
    return error


def nonfinite_tensors(model: torch.nn.Module) -> list[str]:
    """Names of the floating-point parameters and buffers of ``model`` that hold a NaN or an
    infinite value.  One ``aminmax`` reduction per tensor on its own device (a NaN propagates to
    both ends, an infinity is an end), so no tensor is copied; the ends are checked together,
    one transfer of flags per device."""
    names: dict[torch.device, list[str]] = {}
    ends: dict[torch.device, list[torch.Tensor]] = {}
    with torch.no_grad():
        for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
            if tensor.is_floating_point() and tensor.numel():
                names.setdefault(tensor.device, []).append(name)
                ends.setdefault(tensor.device, []).extend(torch.aminmax(tensor))
        bad = []
        for device, values in ends.items():
            finite = torch.isfinite(torch.stack(values).view(-1, 2)).all(1).tolist()
            bad += [name for name, ok in zip(names[device], finite) if not ok]
    return bad


def check_finite_weights(model: torch.nn.Module, source: str, dtype: torch.dtype) -> None:
    """:class:`CheckpointError` naming the checkpoint's files when a loaded weight holds NaN or
    an infinity (scoring would store NaN probabilities as results)."""
    bad = nonfinite_tensors(model)
    if not bad:
        return
    overflow = (" If the files are intact, the values overflow float16: load with dtype='bfloat16' or 'float32'."
                if dtype == torch.float16 else "")
    raise CheckpointError(f"{len(bad)} weight tensor(s) of {source} hold NaN or infinite values after loading "
                          f"(e.g. {bad[:3]}): {weight_files(source)} are damaged; re-download or re-copy the "
                          f"checkpoint.{overflow}")


def weight_files(source: str) -> str:
    """The weight files of a checkpoint directory, named for an error message (else the source)."""
    path = Path(source)
    files = [f.name for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))] if path.is_dir() else []
    return f"the weight files {files} in {path}" if files else f"the weights of {source}"


def load_model(name_or_path: str | os.PathLike = TOY_MODEL_NAME, device: str | torch.device = "cpu",
               dtype: torch.dtype | str = torch.float32):
    """Load ``(model, processor)`` in eval mode.

    ``name_or_path``: ``"toy"``, a tiny random model (``"tiny-random"`` with LLaVA-1.5's
    geometry, ``"tiny-random-llava-next"``, ``"tiny-random-qwen2.5-vl"``), a local checkpoint
    directory, or a hub id such as ``llava-hf/llava-1.5-7b-hf``,
    ``llava-hf/llava-v1.6-vicuna-7b-hf`` or ``Qwen/Qwen2.5-VL-7B-Instruct``.  With no network, a
    hub id that is not in the local cache fails at once with a message naming the directory to
    download it to (:func:`resolve_checkpoint`); a bad device or dtype raises
    :class:`ModelSettingError` (:func:`check_device`, :func:`check_dtype`); weights holding NaN or
    infinite values raise :class:`CheckpointError` (:func:`check_finite_weights`).
    """
    device = check_device(device)
    dtype = check_dtype(dtype, device)
    if str(name_or_path) in TINY_RANDOM_NAMES:
        model, processor = tiny_random(str(name_or_path))
        model = model.to(device, dtype)
        check_finite_weights(model, str(name_or_path), dtype)
        return model, processor
    source = resolve_checkpoint(name_or_path)
    if Path(source).is_dir():
        check_checkpoint_dir(Path(source))
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        model_type, attention = model_class(AutoConfig.from_pretrained(source, local_files_only=offline))
        model = model_type.from_pretrained(source, dtype=dtype, attn_implementation=attention,
                                           local_files_only=offline)
        processor = load_processor(source, offline)
    except Exception as error:  # noqa: BLE001 - transformers, tokenizers and safetensors raise many types
        raise _load_error(source, error) from error
    model = model.to(device).eval()
    check_finite_weights(model, source, dtype)
    return model, processor


__all__ = ["ATTENTION", "DTYPES", "MODEL_CLASSES", "CheckpointError", "ModelNotFoundError", "ModelSettingError",
           "REPO_ROOT", "TINY_LLAVA_NEXT_NAME", "TINY_QWEN_NAME", "TINY_RANDOM_NAME", "TINY_RANDOM_NAMES",
           "TOY_MODEL_DIR", "TOY_MODEL_NAME", "check_checkpoint_dir", "check_device", "check_dtype",
           "check_finite_weights", "known_model_names", "load_model", "load_processor", "model_class",
           "nonfinite_tensors", "resolve_checkpoint", "weight_files",
           "tiny_random_llava", "tiny_random_processor"]
