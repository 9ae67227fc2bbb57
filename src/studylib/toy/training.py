"""Training recipe of the toy LLaVA (run by ``scripts/train_toy.py``).

Plain LLaVA-style training from scratch does not learn within a CPU budget and leaves the
[CLS] attention untrained (``../shared/reference/toy-probe.md``).  Two auxiliary vision losses
stand in for CLIP's pre-training and are discarded after training:

* a multi-label presence head on the pooled CLS output (``pooler_output``), weight 0.5;
* a per-patch class head (16 categories + background) on the penultimate patch features, weight 1.0.

The language loss is the cross-entropy of the assistant's answer tokens (answer + ``</s>``)
in multi-turn vicuna_v1 conversations about one image (yes/no existence questions, a
four-option question, sometimes a caption); each turn's tokens are averaged so that a long
caption weighs as much as a one-word answer.  Evaluation prompts are single-turn, exactly
the first turn's format.

Curriculum: the first ``yesno_only_steps`` steps use yes/no questions only.  Whether an
object is present depends on the question *and* the image jointly (neither alone tells the
answer), and with captions and four-option questions mixed in from step 0 the language model
settled on the answer prior ("No", "B") and never learned to bind the question to the image
(a 1,000-step mixed run stayed at chance on both tasks while its captions were fine); trained
on yes/no alone it leaves chance after ~150 steps.  Earlier recipes also let later turns copy
earlier ones (a repeated question, a caption before the questions); the model then learned to
copy instead of looking, so :func:`training_turns` rules that out.

Phase 1 length: at 1,200 steps (the v4-v6 checkpoints) phase 1 had not converged; held-out
yes/no accuracy was 0.79 on the random split and 0.64 on the adversarial one, and stayed there
through phase 2.  At 1,800 steps it is 0.91 and 0.88 (300 held-out images, all tokens).

Phase 2 (``mc_phase_steps`` more steps, fresh optimiser and heads, lower learning rate):
after phase 1 the four-option accuracy is low (0.34 after 1,800 steps; after 1,200 it was 0.31
with count at chance) while yes/no has converged.  A four-option answer needs three steps: read the
question, find the asked value in the image (the colour of the circle, the number of
objects), and find the letter of the option that names it.  Phase 2 asks two four-option
questions per conversation and adds three more training-only heads: ``mc_value`` names the
asked value at the position that predicts the letter, ``option_match`` says at each option's
word whether it is that value (so every step but copying the matching option's letter is
supervised; the language loss does the rest), and ``count`` predicts the number of
objects from the pooled CLS output (counting was at chance, and the presence head says which
categories are present, not how many objects).  A quarter of phase 2's conversations are a
caption request alone: in phase 1 a caption only ever came last, after other turns, and asked
in the first turn, as the evaluation asks, the phase-1 model answered "No" or "A".  Length (on
the 1,200-step phase 1): 600 phase-2 steps gave a held-out four-option accuracy of 0.35, 1,200
steps 0.40.  Phase 2 can also start from a saved phase-1 checkpoint
(``scripts/train_toy.py --from-phase-one``) with the same result as running both phases.

Determinism: the model is initialised under ``torch.manual_seed(seed)``; every training
image and question is a function of ``(seed, step, position)``; with the same thread count
the same machine reproduces the same weights bit for bit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from studylib.toy import world as tw
from studylib.data.records import LETTERS, Question
from studylib.models import prompts
from studylib.toy.model import PATCH


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1800
    batch_size: int = 32
    turns: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    min_lr_fraction: float = 0.05
    grad_clip: float = 1.0
    cls_aux_weight: float = 0.5
    patch_aux_weight: float = 1.0
    readout_aux_weight: float = 0.5
    caption_probability: float = 0.35
    caption_only_probability: float = 0.0
    mc_turns: int = 1
    yesno_only_steps: int = 300
    seed: int = 0
    threads: int = 2
    # phase 2: four-option focus
    mc_phase_steps: int = 1200
    mc_phase_lr: float = 3e-4
    mc_phase_warmup: int = 50
    mc_phase_mc_turns: int = 2
    mc_phase_caption_only_probability: float = 0.25
    mc_value_aux_weight: float = 0.5
    count_aux_weight: float = 0.5


def phase_two(cfg: TrainConfig) -> TrainConfig:
    """Phase 2's schedule as a config of its own: its step count, learning rate, warm-up and
    four-option turns, no yes/no-only curriculum."""
    return replace(cfg, steps=cfg.mc_phase_steps, lr=cfg.mc_phase_lr, warmup=cfg.mc_phase_warmup,
                   mc_turns=cfg.mc_phase_mc_turns, yesno_only_steps=0, mc_phase_steps=0,
                   caption_only_probability=cfg.mc_phase_caption_only_probability)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_fraction`` of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    floor = cfg.min_lr_fraction
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


# ------------------------------------------------------------------ training conversations


def _training_negative(scene: tw.ToyScene, rng: np.random.Generator, allowed: list[str]) -> str | None:
    """An absent category from ``allowed``: random, same colour as an object in the image
    (adversarial-like) or a frequent shape (popular-like); ``None`` when none is left."""
    absent = [c for c in allowed if c not in scene.categories]
    if not absent:
        return None
    kind = rng.integers(3)
    if kind == 1:
        colours = {o.colour for o in scene.objects}
        pool = [c for c in absent if c.split()[0] in colours]
    elif kind == 2:
        pool = [c for c in absent if c.split()[1] in tw.SHAPES[:2]]
    else:
        pool = absent
    pool = pool or absent
    return pool[int(rng.integers(len(pool)))]


def _revealed_by(question: Question) -> set[str]:
    """Categories whose presence a four-option question's answer gives away."""
    truth = question.choices["ABCD".index(question.answer)]
    if question.split == "colour":  # "What color is the <shape>?" -> truth is a colour
        return {f"{truth} {question.text.split()[-1].rstrip('?')}"}
    if question.split == "shape":  # "What shape is the <colour> object?"
        return {f"{question.text.split()[4]} {truth}"}
    return set()


def training_mc_questions(scene: tw.ToyScene, rng: np.random.Generator, n: int) -> list[Question]:
    """Up to ``n`` four-option questions about ``scene`` that cannot answer each other.

    The first is drawn as in the benchmark; with ``n >= 2`` a second one asks about the count
    if the first did not (and a colour or shape otherwise): a colour question and a shape
    question about one image can give each other away, a count question and either cannot."""
    if n <= 0:
        return []
    first = tw.multiple_choice_question(scene, rng, "mc0")
    if n == 1:
        return [first]
    others = [c for c in tw.multiple_choice_candidates(scene) if (c[0] == "count") != (first.split == "count")]
    if not others:
        return [first]
    return [first, tw.multiple_choice_question(scene, rng, "mc1", others)]


def caption_question(scene: tw.ToyScene, rng: np.random.Generator) -> Question:
    return Question("cap", scene.key, "caption", tw.CAPTION_PROMPT, tw.caption_of(scene, rng))


def training_questions(scene: tw.ToyScene, rng: np.random.Generator, cfg: TrainConfig,
                       step: int = 0) -> list[Question]:
    """The questions of one training conversation about ``scene``, in turn order.

    No turn can be answered by copying from an earlier one: the yes/no questions ask about
    distinct categories, a four-option question (if any) comes first and later yes/no
    questions avoid the category its answer reveals, and a caption (if any) comes last.
    During the first ``cfg.yesno_only_steps`` steps every turn is a yes/no question.  With
    probability ``cfg.caption_only_probability`` the conversation is a caption alone, the
    single-turn form in which captions are evaluated."""
    mixed = step >= cfg.yesno_only_steps
    if mixed and cfg.caption_only_probability > 0 and rng.random() < cfg.caption_only_probability:
        return [caption_question(scene, rng)]
    questions: list[Question] = []
    if mixed:
        questions += training_mc_questions(scene, rng, cfg.mc_turns)
    with_caption = mixed and rng.random() < cfg.caption_probability
    asked = set().union(*(_revealed_by(q) for q in questions))
    for i in range(cfg.turns - len(questions) - int(with_caption)):
        allowed = [c for c in tw.CATEGORIES if c not in asked]
        present = [c for c in allowed if c in scene.categories]
        negative = _training_negative(scene, rng, allowed)
        if present and (negative is None or rng.random() < 0.5):
            category, answer = present[int(rng.integers(len(present)))], "yes"
        elif negative is not None:
            category, answer = negative, "no"
        else:
            break
        asked.add(category)
        questions.append(Question(f"t{i}", scene.key, "yesno", tw.existence_question(category), answer))
    if with_caption:
        questions.append(caption_question(scene, rng))
    return questions


def training_turns(questions: list[Question]) -> list[tuple[str, str]]:
    """(user message, answer) turns; the first turn carries the image."""
    return [(prompts.user_message(q, with_image=i == 0), prompts.reference_answer(q))
            for i, q in enumerate(questions)]


def queried_category(question: Question) -> str:
    """The category a yes/no existence question asks about."""
    return question.text.split(" ", 3)[3].removesuffix(" in the image?")


#: every value a four-option question can ask for (the ``mc_value`` head's classes)
MC_VALUES = (*tw.COLOURS, *tw.SHAPES, *tw.COUNT_WORDS)


def asked_value(question: Question) -> str:
    """The option a four-option question's answer letter names (e.g. "red", "three")."""
    return question.choices[LETTERS.index(question.answer)]


def option_word_positions(tokenizer, ids: list[int], answer_start: int, question: Question) -> list[int]:
    """Positions of the option words ("A. red" -> the position of "red") of the four-option
    question whose answer starts at ``answer_start``: the last ``letter . word`` run of each
    option before the answer (the toy tokenizer gives each of the three one token)."""
    dot = tokenizer.convert_tokens_to_ids(".")
    positions = []
    for letter, word in zip(LETTERS, question.choices):
        pattern = [tokenizer.convert_tokens_to_ids(letter), dot, tokenizer.convert_tokens_to_ids(word)]
        starts = [p for p in range(answer_start - 3, -1, -1) if ids[p:p + 3] == pattern]
        if not starts:
            raise ValueError(f"option {letter}. {word} not found before position {answer_start}")
        positions.append(starts[0] + 2)
    return positions


def encode_conversation(tokenizer, turns: list[tuple[str, str]], n_image_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids and per-token turn index of answer tokens (-1 where no loss is taken).

    The toy tokenizer is word-level, so encoding the conversation piece by piece gives the
    same ids as encoding the whole rendered string."""
    image = prompts.IMAGE_PLACEHOLDER
    ids = tokenizer(prompts.SYSTEM).input_ids  # with BOS
    owner = [-1] * len(ids)
    for t, (message, answer) in enumerate(turns):
        user = tokenizer(f"USER: {message.replace(image, image * n_image_tokens)} ASSISTANT:",
                         add_special_tokens=False).input_ids
        reply = tokenizer(f"{answer}{prompts.TURN_END}", add_special_tokens=False).input_ids
        ids += user + reply
        owner += [-1] * len(user) + [t] * len(reply)
    return ids, owner


@dataclass
class Batch:
    pixel_values: torch.Tensor  # (B, 3, H, W)
    input_ids: torch.Tensor  # (B, L), right-padded
    attention_mask: torch.Tensor
    owner: torch.Tensor  # (B, L) turn index of each answer token, -1 elsewhere
    presence: torch.Tensor  # (B, C) multi-hot categories
    patch_classes: torch.Tensor  # (B, N)
    readout: torch.Tensor  # (Q, 3) rows of (sample, position before the answer, queried category)
    mc_readout: torch.Tensor  # (M, 3) rows of (sample, position before the letter, index in MC_VALUES)
    option_match: torch.Tensor  # (4M, 3) rows of (sample, position of an option's word, 1 if it is the answer)
    n_objects: torch.Tensor  # (B,)


def make_batch(step: int, processor, cfg: TrainConfig) -> Batch:
    tokenizer = processor.tokenizer
    n_tokens = (tw.IMAGE_SIZE // PATCH) ** 2
    images, sequences, owners, presence, patch_classes, readout, mc_readout = [], [], [], [], [], [], []
    n_objects, option_match = [], []
    for i in range(cfg.batch_size):
        scene = tw.sample_scene(tw.TRAIN_SEED_BASE + cfg.seed * 10_000_000 + step * cfg.batch_size + i)
        image, label_map = tw.render_scene(scene)
        rng = np.random.default_rng([cfg.seed, step, i, 7])
        questions = training_questions(scene, rng, cfg, step)
        ids, owner = encode_conversation(tokenizer, training_turns(questions), n_tokens)
        for t, q in enumerate(questions):
            if q.task == "yesno":
                readout.append((i, owner.index(t) - 1, tw.CATEGORIES.index(queried_category(q))))
            elif q.task == "mc":
                answer_start = owner.index(t)
                mc_readout.append((i, answer_start - 1, MC_VALUES.index(asked_value(q))))
                for letter, position in zip(LETTERS, option_word_positions(tokenizer, ids, answer_start, q)):
                    option_match.append((i, position, int(letter == q.answer)))
        images.append(image)
        sequences.append(ids)
        owners.append(owner)
        presence.append([c in scene.categories for c in tw.CATEGORIES])
        patch_classes.append(tw.patch_labels(label_map, PATCH))
        n_objects.append(len(scene.objects))
    length = max(map(len, sequences))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([s + [pad] * (length - len(s)) for s in sequences])
    mask = torch.tensor([[1] * len(s) + [0] * (length - len(s)) for s in sequences])
    owner = torch.tensor([o + [-1] * (length - len(o)) for o in owners])
    pixels = processor.image_processor(images, return_tensors="pt").pixel_values
    return Batch(pixels, input_ids, mask, owner, torch.tensor(presence, dtype=torch.float32),
                 torch.tensor(np.stack(patch_classes)), torch.tensor(readout, dtype=torch.long).view(-1, 3),
                 torch.tensor(mc_readout, dtype=torch.long).view(-1, 3),
                 torch.tensor(option_match, dtype=torch.long).view(-1, 3), torch.tensor(n_objects))


# ------------------------------------------------------------------ losses and loop


class AuxiliaryHeads(nn.Module):
    """Training-only heads, discarded after training.

    Vision (stand-ins for CLIP pre-training): ``presence`` on the pooled CLS output and
    ``patch`` on the penultimate patch features.  Language (stand-ins for a pre-trained LLM
    that already reads its prompt): at the position that predicts a yes/no answer, ``query``
    names the category the question asks about (text only) and ``lm_presence`` lists the
    image's categories (image only).  Each is learnable from one source, so the last position
    learns to read both the question and the image; the answer is then a simple function of
    the two, which breaks the plateau of the yes/no task, whose answer depends on neither
    source alone."""

    def __init__(self, width: int, lm_width: int, n_categories: int):
        super().__init__()
        self.presence = nn.Linear(width, n_categories)
        self.patch = nn.Linear(width, n_categories + 1)
        self.query = nn.Linear(lm_width, n_categories)
        self.lm_presence = nn.Linear(lm_width, n_categories)


class FourOptionHeads(nn.Module):
    """Training-only heads of phase 2, discarded after training: ``mc_value`` names the value a
    four-option question asks for, read at the position that predicts the letter;
    ``option_match`` says at each option's word whether that option is the answer; ``count``
    predicts the number of objects from the pooled CLS output."""

    def __init__(self, width: int, lm_width: int):
        super().__init__()
        self.mc_value = nn.Linear(lm_width, len(MC_VALUES))
        self.option_match = nn.Linear(lm_width, 1)
        self.count = nn.Linear(width, len(tw.COUNT_WORDS))


def answer_loss(logits: torch.Tensor, input_ids: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of answer tokens, averaged within each turn, then over all turns."""
    target_owner = owner[:, 1:]
    token_loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
    turn_ids = target_owner.clamp(min=0) + (target_owner.max() + 1) * torch.arange(
        owner.shape[0]).unsqueeze(1)
    valid = target_owner >= 0
    sums = torch.zeros(int(turn_ids.max()) + 1).index_add(0, turn_ids[valid], token_loss[valid])
    counts = torch.zeros_like(sums).index_add(0, turn_ids[valid], torch.ones_like(token_loss[valid]))
    present = counts > 0
    return (sums[present] / counts[present]).mean()


def _unless_empty(rows: torch.Tensor, loss) -> torch.Tensor:
    """``loss()``, or zero when a batch has no rows for it (a mean over none would be NaN)."""
    return loss() if len(rows) else torch.zeros(())


def training_losses(model, heads: AuxiliaryHeads, batch: Batch, cfg: TrainConfig,
                    mc_heads: FourOptionHeads | None = None) -> dict[str, torch.Tensor]:
    vision = model.model.vision_tower(batch.pixel_values, output_hidden_states=True)
    features = vision.hidden_states[-2][:, 1:]
    embeddings = model.model.multi_modal_projector(features)
    inputs = model.get_input_embeddings()(batch.input_ids)
    image_mask = (batch.input_ids == model.config.image_token_index).unsqueeze(-1)
    inputs = inputs.masked_scatter(image_mask, embeddings.to(inputs.dtype))
    out = model(inputs_embeds=inputs, attention_mask=batch.attention_mask, output_hidden_states=True)
    lm = answer_loss(out.logits, batch.input_ids, batch.owner)
    hidden = out.hidden_states[-1]
    rows, positions, categories = batch.readout.unbind(1)
    state = hidden[rows, positions]
    readout = _unless_empty(rows, lambda: F.cross_entropy(heads.query(state), categories)
                            + F.binary_cross_entropy_with_logits(heads.lm_presence(state), batch.presence[rows]))
    cls = F.binary_cross_entropy_with_logits(heads.presence(vision.pooler_output), batch.presence)
    patch = F.cross_entropy(heads.patch(features).flatten(0, 1), batch.patch_classes.flatten())
    total = lm + cfg.cls_aux_weight * cls + cfg.patch_aux_weight * patch + cfg.readout_aux_weight * readout
    losses = {"lm": lm, "cls_aux": cls, "patch_aux": patch, "readout_aux": readout}
    if mc_heads is not None:
        rows, positions, values = batch.mc_readout.unbind(1)
        losses["mc_value_aux"] = _unless_empty(
            rows, lambda: F.cross_entropy(mc_heads.mc_value(hidden[rows, positions]), values))
        rows, positions, match = batch.option_match.unbind(1)
        losses["option_aux"] = _unless_empty(rows, lambda: F.binary_cross_entropy_with_logits(
            mc_heads.option_match(hidden[rows, positions]).squeeze(-1), match.float()))
        losses["count_aux"] = F.cross_entropy(mc_heads.count(vision.pooler_output), batch.n_objects)
        total = total + cfg.mc_value_aux_weight * (losses["mc_value_aux"] + losses["option_aux"]) \
            + cfg.count_aux_weight * losses["count_aux"]
    return {"loss": total, **losses}


def train(model, processor, cfg: TrainConfig, log=print, log_every: int = 50, on_step=None,
          phases: tuple[int, ...] = (1, 2)) -> dict[str, float]:
    """Train ``model`` in place: phase 1 (``cfg.steps``), then phase 2 (``cfg.mc_phase_steps``);
    returns the wall time and the final (running-mean) losses of the last phase.

    ``phases=(2,)`` runs phase 2 alone on a model that holds phase 1's weights.  ``on_step(step)``
    is called after each optimiser step (1-based, counted over both phases), e.g. to save snapshots."""
    torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    summary: dict[str, float] = {}
    if 1 in phases:
        summary = _train_phase(model, processor, cfg, 0, log, log_every, on_step, with_mc_heads=False)
    if 2 in phases and cfg.mc_phase_steps > 0:
        summary = _train_phase(model, processor, phase_two(cfg), cfg.steps, log, log_every, on_step,
                               with_mc_heads=True)
    model.eval()
    return {**summary, "wall_seconds": time.perf_counter() - start}


def _train_phase(model, processor, cfg: TrainConfig, first_step: int, log, log_every: int, on_step,
                 with_mc_heads: bool) -> dict[str, float]:
    """``cfg.steps`` optimiser steps with fresh heads and a fresh AdamW; batches are drawn for
    global steps ``first_step, first_step + 1, ...`` so each phase sees its own images."""
    torch.manual_seed(cfg.seed + 1 + first_step)
    vision_width, lm_width = model.config.vision_config.hidden_size, model.config.text_config.hidden_size
    heads = AuxiliaryHeads(vision_width, lm_width, len(tw.CATEGORIES))
    mc_heads = FourOptionHeads(vision_width, lm_width) if with_mc_heads else None
    parameters = list(model.parameters()) + list(heads.parameters())
    if mc_heads is not None:
        parameters += list(mc_heads.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    model.train()
    start = time.perf_counter()
    running: dict[str, float] = {}
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = make_batch(first_step + step, processor, cfg)
        losses = training_losses(model, heads, batch, cfg, mc_heads)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(parameters, cfg.grad_clip)
        optimizer.step()
        for name, value in losses.items():
            running[name] = 0.98 * running.get(name, value.item()) + 0.02 * value.item()
        if on_step is not None:
            on_step(first_step + step + 1)
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            elapsed = time.perf_counter() - start
            log(f"step {first_step + step + 1}/{first_step + cfg.steps}  {elapsed:7.0f}s  "
                + "  ".join(f"{k} {v:.4f}" for k, v in running.items()))
    return running
