"""Model families behind the adapter: one module per stock Hugging Face model class.

==========================  ===============================  =====================================
family                      model class                      visual tokens
==========================  ===============================  =====================================
:mod:`.llava`               ``LlavaForConditionalGeneration``  576 (24 x 24, LLaVA-1.5 7B / 13B)
:mod:`.llava_next`          ``LlavaNextForConditionalGeneration``  base tile + unpadded anyres grid
:mod:`.qwen2_5_vl`          ``Qwen2_5_VLForConditionalGeneration``  merged 2x2 units, dynamic size
==========================  ===============================  =====================================

:func:`family_for` picks the family from the model's class; keyword options go to it
(``pad_to_square`` for LLaVA-1.5, ``prune_scope`` for LLaVA-NeXT, ``saliency_block`` for
Qwen2.5-VL).
"""

from __future__ import annotations

from transformers import (LlavaForConditionalGeneration, LlavaNextForConditionalGeneration,
                          Qwen2_5_VLForConditionalGeneration)

from studylib.models.families.base import Family, VisualRow, row_positions
from studylib.models.families.llava import LlavaFamily
from studylib.models.families.llava_next import LlavaNextFamily
from studylib.models.families.qwen2_5_vl import Qwen2_5_VLFamily

FAMILIES: dict[type, type[Family]] = {
    LlavaForConditionalGeneration: LlavaFamily,
    LlavaNextForConditionalGeneration: LlavaNextFamily,
    Qwen2_5_VLForConditionalGeneration: Qwen2_5_VLFamily,
}


def family_for(model, processor, **options) -> Family:
    """The family wrapping ``model`` (by its class), built with ``options``."""
    for model_class, family in FAMILIES.items():
        if isinstance(model, model_class):
            return family(model, processor, **options)
    known = ", ".join(c.__name__ for c in FAMILIES)
    raise TypeError(f"no model family for {type(model).__name__}; supported: {known}")


__all__ = ["FAMILIES", "Family", "LlavaFamily", "LlavaNextFamily", "Qwen2_5_VLFamily", "VisualRow", "family_for",
           "row_positions"]
