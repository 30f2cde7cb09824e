"""mta sbt train: templated loss masks, exactly-zero gradients on masked tokens, a falling loss,
resume, clear errors, and the TRL export trained by a real trl.SFTTrainer."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mta.models import tiny_random_model
from mta.sbt.pipeline import load_tokenizer
from mta.sbt.sft import SFTConfig, SFTTrainer, masked_nll
from mta.sbt.sft_data import SFTExample, read_records, template_example, tokenize_records, write_trl

CONTENT = "<think>\nTwo plus two is four.\n\nLet me check again: two plus two is four.\n</think>\n\nThe answer is 4."
MASKED = "Let me check again: two plus two is four."


@pytest.fixture
def tok():  # per test: SFTTrainer adds <think> / </think> to the tokenizer it is given
    return load_tokenizer("smollm2")


def _tiny(tok, seed=0):
    return tiny_random_model("llama", vocab_size=49152, seed=seed,  # SmolLM2 before <think> is added
                             eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)


def _record(content=CONTENT, masked=MASKED, question="What is 2 + 2?"):
    a = content.index(masked)
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": content}],
            "masked_spans": [[a, a + len(masked)]]}


def test_template_mask_covers_the_assistant_turn_minus_the_masked_span(tok):
    ex = template_example(tok, **_record())
    trained = tok.decode([i for i, m in zip(ex.input_ids, ex.loss_mask) if m])
    untrained = tok.decode([i for i, m in zip(ex.input_ids, ex.loss_mask) if not m])
    assert "Two plus two is four." in trained and "The answer is 4." in trained
    assert "check again" not in trained and "check again" in untrained
    assert "What is 2 + 2?" in untrained  # the prompt
    last = max(i for i, m in enumerate(ex.loss_mask) if m)
    assert ex.input_ids[last] == tok.eos_token_id  # the end-of-turn token is trained, nothing after it
    without = template_example(tok, _record()["messages"], [])
    assert without.input_ids == ex.input_ids and sum(without.loss_mask) > sum(ex.loss_mask)


def test_records_without_masks_or_messages_are_errors_naming_the_field(tmp_path, tok):
    rec = _record()
    del rec["masked_spans"]
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(_record()) + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(ValueError, match=r"d.jsonl:2: no 'masked_spans' field"):
        read_records(path)
    with pytest.raises(ValueError, match="masked_spans"):
        SFTTrainer(SFTConfig(run_dir=str(tmp_path / "r")), model=_tiny(tok), tokenizer=tok, records=[rec])
    bad = _record()
    bad["masked_spans"] = [[0, 10_000]]
    with pytest.raises(ValueError, match="masked_spans"):
        template_example(tok, **bad)
    with pytest.raises(ValueError, match="messages"):
        template_example(tok, [{"role": "user", "content": "hi"}], [])
    with pytest.raises(ValueError, match="micro_batch_size"):
        SFTConfig(batch_size=3, micro_batch_size=2).validate()


def _grads(model, examples, pad_id):
    model.zero_grad(set_to_none=True)
    nll, n = masked_nll(model, examples, pad_id, torch.device("cpu"))
    (nll / n).backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_masked_tokens_get_exactly_zero_gradient(tok):
    """Two sequences equal up to a masked tail with other tokens: if any masked token reached
    the loss, some parameter's gradient would differ. Unmasked, they do differ (the control)."""
    model = _tiny(tok)
    head = tok.encode("The answer to two plus two is four, as I have checked.", add_special_tokens=False)
    tail_a = tok.encode(" Wait, let me verify once more", add_special_tokens=False)
    tail_b = [(t * 7 + 3) % len(tok) for t in tail_a]
    mask = [0, 0] + [1] * (len(head) - 2) + [0] * len(tail_a)
    a = _grads(model, [SFTExample("a", head + tail_a, mask)], tok.pad_token_id)
    b = _grads(model, [SFTExample("b", head + tail_b, mask)], tok.pad_token_id)
    assert a.keys() == b.keys() and len(a) == len(list(model.parameters()))
    assert all(torch.equal(a[k], b[k]) for k in a)
    ones = [0, 0] + [1] * (len(head) + len(tail_a) - 2)
    a1 = _grads(model, [SFTExample("a", head + tail_a, ones)], tok.pad_token_id)
    b1 = _grads(model, [SFTExample("b", head + tail_b, ones)], tok.pad_token_id)
    assert not all(torch.equal(a1[k], b1[k]) for k in a1)


def test_masked_loss_equals_cross_entropy_with_ignored_labels(tok):
    """A masked span in the middle (SBT-D's kept context): same loss and gradients as the
    full-logits cross-entropy with label -100 on the masked tokens."""
    model = _tiny(tok)
    ex = template_example(tok, **_record())
    got = _grads(model, [ex], tok.pad_token_id)
    model.zero_grad(set_to_none=True)
    ids = torch.tensor([ex.input_ids])
    labels = torch.tensor([[i if m else -100 for i, m in zip(ex.input_ids, ex.loss_mask)]])
    model(input_ids=ids, labels=labels).loss.backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(got[k], p.grad, rtol=1e-4, atol=1e-6)


def _dataset(n=4):
    return [_record(CONTENT.replace("four", w).replace("4", str(k)), MASKED.replace("four", w), f"What is {k}?")
            for k, w in zip(range(n), ["four", "five", "six", "seven"])]


def test_sft_loss_falls_and_resume_continues_identically(tmp_path, tok):
    # each trainer adds <think> / </think> to the tokenizer it is given: a fresh one each
    cfg = SFTConfig(steps=6, batch_size=4, micro_batch_size=2, lr=3e-3, run_dir=str(tmp_path / "full"),
                    progress=False)
    rows = SFTTrainer(cfg, model=_tiny(tok), tokenizer=tok, records=_dataset()).train()
    losses = [r["loss"] for r in rows]
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0] - 1.0, losses
    assert (tmp_path / "full" / "metrics.png").is_file() and (tmp_path / "full" / "model" / "config.json").is_file()
    half = SFTTrainer(dataclasses.replace(cfg, run_dir=str(tmp_path / "half")), model=_tiny(tok),
                      tokenizer=load_tokenizer("smollm2"), records=_dataset())
    for _ in range(3):
        half.step()
    half.save()
    resumed = SFTTrainer(half.cfg, model=_tiny(tok, seed=9), tokenizer=load_tokenizer("smollm2"), records=_dataset())
    assert resumed.step_count == 3
    rows2 = resumed.train()
    assert [r["loss"] for r in rows2] == losses
    full_state = torch.load(tmp_path / "full" / "checkpoint" / "model.pt")
    assert all(torch.equal(full_state[k], v) for k, v in resumed.model.state_dict().items())


def test_trl_sft_trainer_honours_the_exported_masks(tmp_path, tok):
    """Real trl.SFTTrainer steps on the export: sequences that differ only in masked tokens
    train to identical weights; the same sequences unmasked do not; the weights moved."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer as TRLTrainer

    full = tokenize_records([_record()], tok)[0]
    first_masked = full.loss_mask.index(0, full.loss_mask.index(1))
    cut = full.loss_mask.index(1, first_masked)  # the record up to the end of its masked span: a masked tail
    base = SFTExample("a", full.input_ids[:cut], full.loss_mask[:cut])
    other = SFTExample("b", base.input_ids[:first_masked] + [(t * 7 + 3) % len(tok) for t in
                                                             base.input_ids[first_masked:]], base.loss_mask)

    def train(examples, name):
        path = write_trl(examples, tmp_path / f"{name}.jsonl")
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert set(rows[0]) == {"id", "input_ids", "assistant_masks"}
        model = _tiny(tok)
        args = TRLConfig(output_dir=str(tmp_path / name), max_steps=2, per_device_train_batch_size=2,
                         learning_rate=1e-3, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
                         seed=0, dataset_num_proc=None, bf16=False)
        trainer = TRLTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
        labels = trainer.train_dataset[0]["labels"]
        assert [lab != -100 for lab in labels] == [bool(m) for m in examples[0].loss_mask]
        trainer.train()
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    init = {k: v.clone() for k, v in _tiny(tok).state_dict().items()}
    a = train([base, base], "a")
    b = train([other, other], "b")
    assert any(not torch.equal(a[k], init[k]) for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ones = [SFTExample(e.id, e.input_ids, [0] + [1] * (len(e.input_ids) - 1)) for e in (base, other)]
    a1 = train([ones[0], ones[0]], "a1")
    b1 = train([ones[1], ones[1]], "b1")
    assert not all(torch.equal(a1[k], b1[k]) for k in a1)
