"""The built-in synthetic multi-step reasoning task ("chain"): the library's embedded default.

A problem is a chain of operations in modular arithmetic, applied strictly left to right (no
operator precedence), each step acting on the previous result:

    question:  7+5*3-4            (mod 10)
    cot steps: 7+5=2  2*3=6  6-4=2
    answer:    2

With CoT each step is one small table lookup on numbers already written out; without CoT the
model has to compose all of them inside one forward pass, which a 2-layer model cannot do for
four or more steps (No-CoT stays near chance, 1/modulus). Knobs: `num_steps` (operations after
the initial assignment; a list mixes chain lengths, drawn uniformly per problem), `modulus` (the
number range), the operators, and `shuffle_premises`:

    shuffle_premises=true:  c=b-4;a=7+5;b=a*3;c?       (one named premise per step, in random order)
    cot steps and answer:   unchanged (7+5=2  2*3=6  6-4=2, answer 2)

With shuffled premises the k-th step is no longer at a fixed place in the question, so a model
cannot solve the task by a fixed position pattern: it has to follow the chain through the names.

Splits are disjoint by construction: every problem is keyed by its chain (the unshuffled question
string) and belongs to the split chosen by a hash of that key, so a chain can never appear in two
splits (in any premise order), whatever the sizes and seeds.
"""

from __future__ import annotations

import hashlib
import random
import re
import string

from mentalese.errors import MentaleseError
from mentalese.tasks.example import Example
from mentalese.tasks.registry import BenchmarkSpec, register

SPLITS = ("train", "valid", "test")
_SPLIT_SHARE = {"train": (0, 80), "valid": (80, 90), "test": (90, 100)}  # hash buckets out of 100
_SPLIT_SEED_OFFSET = {"train": 0, "valid": 1_000_003, "test": 2_000_003}
_OPS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}


def split_of(question: str) -> str:
    bucket = int(hashlib.sha1(question.encode()).hexdigest(), 16) % 100
    return next(s for s, (lo, hi) in _SPLIT_SHARE.items() if lo <= bucket < hi)


def make_problem(rng: random.Random, num_steps: int, modulus: int, ops: str) -> Example:
    value = rng.randrange(modulus)
    question, steps = str(value), []
    for _ in range(num_steps):
        op, operand = rng.choice(ops), rng.randrange(1, modulus)
        new = _OPS[op](value, operand) % modulus
        question += f"{op}{operand}"
        steps.append(f"{value}{op}{operand}={new}")
        value = new
    return Example(question=question, answer=str(value), cot_steps=steps)


def shuffled_premises(chain: str, rng: random.Random) -> str:
    """`7+5*3-4` -> e.g. `c=b-4;a=7+5;b=a*3;c?`: premise k names step k's result, listed in random order."""
    terms = re.findall(r"[-+*]\d+", chain)
    first = chain[: len(chain) - sum(len(t) for t in terms)]
    names = string.ascii_lowercase
    premises = [f"a={first}{terms[0]}"] + [f"{names[k]}={names[k - 1]}{t}" for k, t in enumerate(terms[1:], 1)]
    rng.shuffle(premises)
    return ";".join(premises) + f";{names[len(terms) - 1]}?"


def _step_counts(num_steps: int | list[int]) -> list[int]:
    counts = [num_steps] if isinstance(num_steps, int) else list(num_steps)
    if not counts or any(not isinstance(n, int) or not 1 <= n <= 25 for n in counts):
        raise MentaleseError(f"num_steps must be in 1..25 (or a non-empty list of such), got {num_steps}")
    return counts


def generate_chain(
    split: str = "test",
    num_examples: int | None = None,
    num_steps: int | list[int] = 4,
    modulus: int = 10,
    ops: str = "+-*",
    seed: int = 0,
    shuffle_premises: bool = False,
) -> list[Example]:
    """Generate `num_examples` distinct problems of one split (defaults: 5000 train, 500 valid/test)."""
    if split not in SPLITS:
        raise MentaleseError(f"synthetic task has splits {SPLITS}, got {split!r}")
    counts = _step_counts(num_steps)
    if modulus < 2:
        raise MentaleseError(f"modulus must be >= 2, got {modulus}")
    if not ops or any(o not in _OPS for o in ops):
        raise MentaleseError(f"ops must be a non-empty string of + - *, got {ops!r}")
    if num_examples is None:
        num_examples = 5000 if split == "train" else 500
    if num_examples < 1:
        raise MentaleseError(f"num_examples must be >= 1, got {num_examples}")
    space = min(modulus * ((modulus - 1) * len(ops)) ** n for n in counts) * len(counts)
    if num_examples > space * _SPLIT_SHARE[split][1] // 200:  # stay well inside the split's share
        raise MentaleseError(f"{num_examples} distinct {split} problems do not exist for these knobs")
    length_key = counts[0] if len(counts) == 1 else sum(n * 31 ** i for i, n in enumerate(counts))
    rng = random.Random(seed * 7919 + _SPLIT_SEED_OFFSET[split] + length_key * 101 + modulus)
    order_rng = random.Random(f"premise-order-{seed}-{split}")  # own stream: the chains stay the unshuffled ones
    seen: set[str] = set()
    out: list[Example] = []
    while len(out) < num_examples:
        steps = counts[0] if len(counts) == 1 else rng.choice(counts)
        ex = make_problem(rng, steps, modulus, ops)
        if ex.question in seen or split_of(ex.question) != split:  # keyed by the chain, in any premise order
            continue
        seen.add(ex.question)
        meta = {"num_steps": steps, "modulus": modulus}
        if shuffle_premises:
            meta["chain"] = ex.question
            ex.question = shuffled_premises(ex.question, order_rng)
        ex.id = f"{split}-{len(out)}"
        ex.meta = meta
        out.append(ex)
    return out


CHAIN = register(
    BenchmarkSpec(
        name="chain",
        version=1,
        description="Synthetic multi-step modular arithmetic chains (built-in toy task)",
        generator=generate_chain,
        prompt="{question}\n",
        extraction="answer_is",
        grader="numeric",
    )
)
