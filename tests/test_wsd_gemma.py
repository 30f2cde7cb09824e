"""mta.wsd on the real pair: SmolLM2-135M-Instruct drafts, Gemma-3-270M (base) takes over.

Opt-in (``pytest -m gemma``, or ``make test-gemma``, which installs the ~240 MB Gemma
packages): the first Gemma load dequantises its GGUF (minutes on 2 CPU cores), and each run
takes a few minutes more. Without ``-m gemma`` every test here is skipped, installed or not.
"""

import math

import pytest

from mta.data import load_gsm8k
from mta.wsd import weak_to_strong_decode
from mta.wsd.demo import base_prompt
from test_wsd import reference_row

pytestmark = [pytest.mark.gemma, pytest.mark.smollm2]

DRAFT, NEW = 48, 24


def _require_opt_in(config):
    if "gemma" not in (config.getoption("markexpr") or ""):
        pytest.skip("opt-in: run with pytest -m gemma (make test-gemma)")


@pytest.fixture(autouse=True)
def _opt_in(request):
    _require_opt_in(request.config)


@pytest.fixture(scope="module")
def pair(request):
    from mta.models import gemma3_installed, load_gemma3_270m, load_smollm2

    _require_opt_in(request.config)  # module fixtures run before the autouse one: skip before loading
    if not gemma3_installed():
        pytest.skip("the Gemma-3-270M packages are not installed (make gemma)")
    drafter, dtok = load_smollm2()
    base, btok = load_gemma3_270m()
    return drafter, dtok, base, btok


def test_gemma_loader(pair):
    _, _, base, btok = pair
    assert type(base).__name__ == "Gemma3ForCausalLM" and base.config.vocab_size == 262144
    assert len(btok) == 262144 and btok.padding_side == "left"
    text = "Question: Janet has 3 apples.\nAnswer:\n The answer is 42."
    assert btok.decode(btok(text, add_special_tokens=False)["input_ids"]) == text


def test_smollm2_to_gemma_batched_equals_per_row_reference(pair):
    drafter, dtok, base, btok = pair
    problems = load_gsm8k(limit=3)
    questions = [p.question for p in problems]
    out = weak_to_strong_decode(drafter, dtok, base, btok, questions,
                                base_prompts=[base_prompt(q) for q in questions],
                                max_draft_tokens=DRAFT, max_new_tokens=NEW, progress=False)
    for b, row in enumerate(out.rows):
        # Different vocabularies: the draft really was re-tokenised.
        assert row.draft_base_token_ids != row.draft_token_ids
        ref = reference_row(drafter, dtok, base, btok, questions[b], base_prompt(questions[b]), window=6,
                            gamma=0.8, max_draft=DRAFT, max_new=NEW)
        assert row.draft_token_ids == ref["draft"]
        assert row.draft_base_token_ids == ref["draft_b"]
        assert row.draft_base_logprobs == pytest.approx(ref["scores"], abs=1e-3)
        # A switch point is decided by a window's score against 0.8; a tie within float
        # noise would make the comparison meaningless, so check the margin first.
        lp = row.draft_base_logprobs
        margins = [abs(math.exp(sum(lp[i - 6: i]) / 6) - 0.8) for i in range(6, len(lp) + 1)]
        assert min(margins) > 1e-4
        assert (row.switch_point, row.switched) == (ref["cut"], ref["switched"])
        assert row.base_token_ids == ref["cont"]
        assert row.text == ref["text"]
    # SmolLM2's drafts are confident text for Gemma: at γ = 0.8 it takes over somewhere.
    assert any(r.switched and 0 < r.switch_point < len(r.draft_base_token_ids) for r in out.rows)
