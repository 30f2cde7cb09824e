"""A synthetic verifiable task for the RL tests: answer the successor of a digit.

A tiny random Llama over a 16-token vocabulary (BOS 0, EOS / pad 1, digits 2..11, letters
12..15) learns it from the reward alone in a few dozen CPU steps.
"""

from mta.data import Problem
from mta.models import tiny_random_model
from mta.rl import RLConfig

VOCAB = 16


class DigitTokenizer:
    """Text <-> ids for the digit task; no chat template."""

    pad_token_id = eos_token_id = 1
    bos_token_id = 0
    chat_template = None

    def __len__(self):
        return VOCAB

    def __call__(self, text, add_special_tokens=True):
        ids = [0] if add_special_tokens else []
        return {"input_ids": ids + [2 + int(c) for c in text if c.isdigit()]}

    def decode(self, ids, skip_special_tokens=True):
        out = []
        for i in ids:
            if i in (0, 1):
                if not skip_special_tokens:
                    out.append("<s>" if i == 0 else "</s>")
            else:
                out.append(str(i - 2) if i < 12 else chr(ord("a") + i - 12))
        return "".join(out)


def successor_problems():
    return [Problem(f"d{d}", str(d), str((d + 1) % 10), "successor") for d in range(10)]


def digit_model(seed=0):
    return tiny_random_model("llama", vocab_size=VOCAB, seed=seed, eos_token_id=1, pad_token_id=1)


def digit_config(tmp_path, **changes):
    base = dict(model="digit", data="successor", chat_template=False, prompts_per_step=8, group_size=8,
                max_new_tokens=2, lr=1e-2, micro_batch_size=32, run_dir=str(tmp_path / "run"), resume=False,
                progress=False, seed=0, compact_every=0)
    return RLConfig(**(base | changes))
