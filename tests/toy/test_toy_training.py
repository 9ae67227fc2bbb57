"""The toy training recipe is deterministic and its losses are wired correctly."""

from __future__ import annotations

import numpy as np
import torch

from studylib.toy import world as tw
from studylib.toy import model as toy
from studylib.toy.training import (MC_VALUES, TrainConfig, answer_loss, asked_value, lr_at, make_batch,
                                          phase_two, train, training_questions)


BRIEF = TrainConfig(steps=3, batch_size=3, warmup=1, yesno_only_steps=1, mc_phase_steps=2, mc_phase_warmup=1)


def _train_briefly():
    model, processor = toy.build_untrained(seed=0)
    train(model, processor, BRIEF, log=lambda line: None)
    return model.state_dict()


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights():
    assert _same(_train_briefly(), _train_briefly())


def test_phase_two_from_a_saved_phase_one_checkpoint_gives_the_same_weights(tmp_path):
    both = _train_briefly()
    model, processor = toy.build_untrained(seed=0)
    train(model, processor, BRIEF, log=lambda line: None, phases=(1,))
    toy.save(model, processor, tmp_path)
    resumed, processor = toy.load_for_training(tmp_path)
    train(resumed, processor, BRIEF, log=lambda line: None, phases=(2,))
    assert _same(both, resumed.state_dict())
    assert not _same(both, model.state_dict())


def test_phase_two_asks_two_four_option_questions_that_cannot_answer_each_other():
    cfg = phase_two(TrainConfig())
    for seed in range(200):
        scene = tw.sample_scene(seed)
        questions = training_questions(scene, np.random.default_rng(seed), cfg, step=0)
        kinds = [q.split for q in questions if q.task == "mc"]
        if [q.task for q in questions] == ["caption"]:  # a caption request alone
            continue
        assert 1 <= len(kinds) <= 2 and len(set(kinds)) == len(kinds)
        assert not {"colour", "shape"} <= set(kinds)
        for q in questions:
            if q.task == "mc":
                assert asked_value(q) in MC_VALUES


def test_mc_readout_points_at_the_position_before_the_letter():
    _, processor = toy.build_untrained()
    batch = make_batch(0, processor, phase_two(TrainConfig(batch_size=4)))
    assert len(batch.mc_readout) >= 4
    letters = set(processor.tokenizer.convert_tokens_to_ids(list("ABCD")))
    for row, position, value in batch.mc_readout.tolist():
        assert batch.input_ids[row, position + 1].item() in letters
        assert batch.owner[row, position].item() == -1 and batch.owner[row, position + 1].item() >= 0
        assert 0 <= value < len(MC_VALUES)
    assert batch.n_objects.min() >= 1
    assert len(batch.option_match) == 4 * len(batch.mc_readout)
    assert batch.option_match[:, 2].sum().item() == len(batch.mc_readout)  # one right option per question
    for row, position, match in batch.option_match.tolist():
        word = processor.tokenizer.convert_ids_to_tokens(batch.input_ids[row, position].item())
        assert word in MC_VALUES
        assert processor.tokenizer.convert_ids_to_tokens(batch.input_ids[row, position - 1].item()) == "."


def test_batches_are_a_function_of_step():
    _, processor = toy.build_untrained()
    cfg = TrainConfig(batch_size=2)
    a, b, c = make_batch(5, processor, cfg), make_batch(5, processor, cfg), make_batch(6, processor, cfg)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.pixel_values, b.pixel_values)
    assert not torch.equal(a.pixel_values, c.pixel_values)


def test_answer_loss_averages_each_turn_then_turns():
    vocab = 5
    ids = torch.tensor([[0, 1, 2, 3, 4]])
    owner = torch.tensor([[-1, 0, -1, 1, 1]])  # targets 1 (turn 0) and 3, 4 (turn 1)
    logits = torch.zeros(1, 5, vocab)
    logits[0, 0, 1] = 10.0  # predicts turn 0's token confidently
    loss = answer_loss(logits, ids, owner)
    uniform = torch.log(torch.tensor(float(vocab)))
    turn0 = torch.nn.functional.cross_entropy(logits[0, 0:1], ids[0, 1:2])
    assert torch.isclose(loss, (turn0 + uniform) / 2)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(steps=100, warmup=10, lr=1e-3, min_lr_fraction=0.05)
    assert lr_at(0, cfg) < lr_at(9, cfg) == cfg.lr
    assert abs(lr_at(99, cfg) - 0.05e-3) < 1e-6
