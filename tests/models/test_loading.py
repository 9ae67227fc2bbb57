from __future__ import annotations

import pytest

from studylib.models.loading import ModelNotFoundError, load_model, resolve_checkpoint


def test_missing_local_checkpoint_names_the_path(tmp_path):
    missing = tmp_path / "llava-1.5-7b-hf"
    with pytest.raises(ModelNotFoundError, match=str(missing)):
        load_model(str(missing))


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_checkpoint(str(tmp_path))


def test_unreachable_hub_id_says_where_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match=r"--local-dir models/llava-1.5-7b-hf"):
        load_model("llava-hf/llava-1.5-7b-hf")


def test_tiny_random_has_llava_geometry():
    model, processor = load_model("tiny-random")
    vision = model.config.vision_config
    assert (vision.image_size // vision.patch_size) ** 2 == 576
    assert vision.hidden_size // vision.num_attention_heads == 16
    assert model.config.vision_feature_layer == -2
    assert model.config.vision_config._attn_implementation == "eager"
    assert model.config.text_config._attn_implementation == "sdpa"
