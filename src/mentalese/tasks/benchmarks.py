"""The built-in benchmarks: row parsers plus one `register(BenchmarkSpec(...))` per benchmark.

Local files live under the data directory (see `mentalese.tasks.registry`); their provenance and
row counts are in the data manifest (MANIFEST.md beside the files). Hub ids are the usual Hugging
Face copies of the same data, used when no local file exists (or with source="hub").

Parsers are built per benchmark so that an error names it: "gsm8k row test-3: no '####' ...".
The Example id is the registry's row id ("<split>-<index>"); dataset-native ids go in meta.

Multiplication training data is not a registered split: the 808k-line train files are not held
locally, so `generate_multiplication(n_digits, num_examples, seed)` writes fresh lines in exactly
the released format (see `format_multiplication_line`).
"""

from __future__ import annotations

from typing import Any, Callable

from mentalese.tasks.example import Example
from mentalese.tasks.formats import (
    format_multiplication_line,
    generate_multiplication,
    get_field,
    gsm8k_steps,
    last_boxed,
    normalize_number,
    parse_multiplication_line,
    row_error,
    split_hash_answer,
    split_icot_line,
    split_sentences,
    text_line,
)
from mentalese.tasks.registry import BenchmarkSpec, register

__all__ = ["format_multiplication_line", "generate_multiplication", "last_boxed", "MULT_SIZES"]

Parser = Callable[[Any, str], Example]

# Fine-tuned models (CoT-SFT, CODI, iCoT) see the bare question, as in their training data; pass
# `prompt=` to the harness for instruction-following models.
ANSWER_IS_PROMPT = "{question}\n"
BOXED_PROMPT = "{question}\nPlease reason step by step, and put your final answer within \\boxed{}.\n"

# --------------------------------------------------------------------------------------------
# Parser factories (one per file family)


def gsm8k_parser(bench: str, equation_cot: bool = False) -> Parser:
    """{question, answer: "...<<a*b=c>>...\\n#### 72"} (openai/gsm8k)."""

    def parse(row: Any, row_id: str) -> Example:
        question = get_field(row, "question", bench, row_id)
        body, answer = split_hash_answer(get_field(row, "answer", bench, row_id), bench, row_id)
        nl_steps, equations = gsm8k_steps(body)
        return Example(
            question=question.strip(),
            answer=normalize_number(answer, bench, row_id),
            cot_steps=equations if equation_cot else nl_steps,
            id=row_id,
            meta={"equations": equations, "nl_steps": nl_steps},
        )

    return parse


def icot_line_parser(bench: str, natural_language: bool) -> Parser:
    """`question||<<eq>> <<eq>> #### answer` (or natural-language cot) text lines."""

    def parse(row: Any, row_id: str) -> Example:
        question, cot, answer = split_icot_line(text_line(row, bench, row_id), bench, row_id)
        steps = split_sentences(cot) if natural_language else cot.split()
        return Example(question=question, answer=normalize_number(answer, bench, row_id), cot_steps=steps, id=row_id)

    return parse


def question_cot_answer_parser(bench: str, natural_language: bool) -> Parser:
    """{question, cot, answer} rows of zen-E/GSM8k-Aug(-NL)."""

    def parse(row: Any, row_id: str) -> Example:
        question = get_field(row, "question", bench, row_id)
        cot = get_field(row, "cot", bench, row_id) if isinstance(row, dict) and row.get("cot") else ""
        answer = get_field(row, "answer", bench, row_id, float)
        steps = split_sentences(cot) if natural_language else cot.split()
        answer = normalize_number(answer, bench, row_id)
        return Example(question=question.strip(), answer=answer, cot_steps=steps, id=row_id)

    return parse


def svamp_parser(bench: str) -> Parser:
    """{ID, Body, Question, Equation, Answer: 51.0, Type}."""

    def parse(row: Any, row_id: str) -> Example:
        body = get_field(row, "Body", bench, row_id).strip()
        question = get_field(row, "Question", bench, row_id).strip()
        return Example(
            question=f"{body} {question}",
            answer=normalize_number(get_field(row, "Answer", bench, row_id, float), bench, row_id),
            id=row_id,
            meta={k: row[k] for k in ("ID", "Equation", "Type") if k in row},
        )

    return parse


def input_target_parser(bench: str) -> Parser:
    """{input, target} (GSM-Hard, PAL-style MAWPS files)."""

    def parse(row: Any, row_id: str) -> Example:
        target = get_field(row, "target", bench, row_id, float)
        meta = {"target_raw": target}
        if isinstance(row, dict) and row.get("code"):
            meta["code"] = row["code"]
        return Example(
            question=get_field(row, "input", bench, row_id).strip(),
            answer=normalize_number(target, bench, row_id),
            id=row_id,
            meta=meta,
        )

    return parse


def multiarith_parser(bench: str) -> Parser:
    """MAWPS JSON {iIndex, sQuestion, lEquations, lSolutions: [39.0]}."""

    def parse(row: Any, row_id: str) -> Example:
        solutions = get_field(row, "lSolutions", bench, row_id, list)
        if not solutions:
            raise row_error(bench, row_id, "field 'lSolutions' is empty")
        return Example(
            question=get_field(row, "sQuestion", bench, row_id).strip(),
            answer=normalize_number(solutions[0], bench, row_id),
            id=row_id,
            meta={"iIndex": row.get("iIndex"), "lEquations": row.get("lEquations", [])},
        )

    return parse


def multiarith_hub_parser(bench: str) -> Parser:
    """ChilleD/MultiArith {question, final_ans}."""

    def parse(row: Any, row_id: str) -> Example:
        return Example(
            question=get_field(row, "question", bench, row_id).strip(),
            answer=normalize_number(get_field(row, "final_ans", bench, row_id, float), bench, row_id),
            id=row_id,
        )

    return parse


# MATH train has two solutions that end in an empty \\boxed{}; both answers are choice (A) 0.
_MATH_EMPTY_BOX_ERRATA = {
    "For any integer $n>1$, the number of prime numbers greater than $n!+1$": "0",  # train/number_theory/7115
    "You are given a sequence of $58$ terms; each term has the form $P+n$": "0",  # train/number_theory/7117
}


def math_solution_parser(bench: str) -> Parser:
    """Hendrycks MATH {problem, solution, level, type}: answer = last \\boxed{} of the solution."""

    def parse(row: Any, row_id: str) -> Example:
        solution = get_field(row, "solution", bench, row_id)
        problem = get_field(row, "problem", bench, row_id)
        answer = last_boxed(solution)
        meta = {k: row[k] for k in ("level", "type", "unique_id") if k in row}
        if answer is not None and not answer.strip():
            erratum = next((a for prefix, a in _MATH_EMPTY_BOX_ERRATA.items() if problem.startswith(prefix)), None)
            answer, meta["answer_erratum"] = erratum, True
        if answer is None or not answer.strip():
            raise row_error(bench, row_id, "no complete, non-empty \\boxed{...} in the solution")
        return Example(
            question=problem.strip(),
            answer=answer.strip(),
            cot_steps=[solution],
            id=row_id,
            meta=meta,
        )

    return parse


def problem_answer_parser(bench: str, integer_answer: bool = False) -> Parser:
    """{problem|question, answer, [solution], ...} (MATH-500, AIME, AMC)."""

    def parse(row: Any, row_id: str) -> Example:
        question = get_field(row, ("problem", "question"), bench, row_id)
        raw = get_field(row, "answer", bench, row_id, float if integer_answer else str)
        if integer_answer or not isinstance(raw, str):
            answer = normalize_number(raw, bench, row_id)
        else:
            answer = raw.strip()
        solution = row.get("solution")
        meta = {k: row[k] for k in ("id", "unique_id", "subject", "level", "url", "year") if row.get(k) is not None}
        return Example(
            question=question.strip(),
            answer=answer,
            cot_steps=[solution] if isinstance(solution, str) and solution.strip() else [],
            id=row_id,
            meta=meta,
        )

    return parse


def soft_thinking_parser(bench: str) -> Parser:
    """Soft-Thinking JSON {prompt: [{from: "user", value}], final_answer}."""

    def parse(row: Any, row_id: str) -> Example:
        turns = get_field(row, "prompt", bench, row_id, list)
        users = [t.get("value") for t in turns if isinstance(t, dict) and t.get("from") in ("user", "human")]
        if not users or not isinstance(users[0], str) or not users[0].strip():
            raise row_error(bench, row_id, "no user turn with a 'value' in 'prompt'")
        answer = get_field(row, "final_answer", bench, row_id, float)
        return Example(question=users[0].strip(), answer=normalize_number(answer, bench, row_id), id=row_id)

    return parse


def coconut_parser(bench: str, numeric: bool = False) -> Parser:
    """Coconut JSON {question, steps: [...], answer, [graph fields]} (ProsQA, ProntoQA, GSM)."""

    def parse(row: Any, row_id: str) -> Example:
        question = get_field(row, "question", bench, row_id)
        steps = get_field(row, "steps", bench, row_id, list)
        if not all(isinstance(s, str) for s in steps):
            raise row_error(bench, row_id, "field 'steps' must be a list of strings")
        answer = get_field(row, "answer", bench, row_id, float if numeric else str)
        meta = {k: v for k, v in row.items() if k not in ("question", "steps", "answer")}
        return Example(
            question=question.strip(),
            answer=normalize_number(answer, bench, row_id) if numeric else answer.strip(),
            cot_steps=[s.strip() for s in steps if s.strip()],
            id=row_id,
            meta=meta,
        )

    return parse


def multiplication_parser(bench: str) -> Parser:
    def parse(row: Any, row_id: str) -> Example:
        return parse_multiplication_line(text_line(row, bench, row_id), bench, row_id)

    return parse


# --------------------------------------------------------------------------------------------
# Registrations

# Arithmetic word problems (numeric answers, "The answer is N")

register(BenchmarkSpec(
    name="gsm8k", version=1,
    description="GSM8K grade-school math word problems (Cobbe et al. 2021), natural-language CoT.",
    parse_row=gsm8k_parser("gsm8k"),
    local_files={"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
    hub_id="openai/gsm8k", hub_config="main", hub_splits={"train": "train", "test": "test"},
    prompt=ANSWER_IS_PROMPT, extraction="answer_is", grader="numeric",
    notes="cot_steps: solution lines before '####' with <<calculator>> annotations removed; "
    "meta['equations'] holds the annotations (GSM8k-Aug style), meta['nl_steps'] the lines.",
))

register(BenchmarkSpec(
    name="gsm8k-eq", version=1,
    description="GSM8K with equation-only CoT (<<48/2=24>> ...), GSM8k-Aug style, from the GSM8K annotations.",
    parse_row=gsm8k_parser("gsm8k-eq", equation_cot=True),
    local_files={"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
    hub_id="openai/gsm8k", hub_config="main", hub_splits={"train": "train", "test": "test"},
    prompt=ANSWER_IS_PROMPT, extraction="answer_is", grader="numeric",
    notes="A local stand-in for GSM8k-Aug training data (the 385k-row augmented train file is hub-only: "
    "gsm8k-aug split 'train'). Equations are GSM8K's own annotations, so a few rows have none.",
))

register(BenchmarkSpec(
    name="gsm8k-aug", version=1,
    description="GSM8k-Aug (iCoT/Coconut/CODI): GSM8K with equation-only CoT, 385k augmented train on the hub.",
    parse_row=icot_line_parser("gsm8k-aug", natural_language=False),
    parse_hub_row=question_cot_answer_parser("gsm8k-aug", natural_language=False),
    local_files={"valid": "gsm8k_aug_icot/valid.txt", "test": "gsm8k_aug_icot/test.txt"},
    hub_id="zen-E/GSM8k-Aug", hub_splits={"train": "train", "valid": "validation", "test": "test"},
    prompt=ANSWER_IS_PROMPT, extraction="answer_is", grader="numeric",
    notes="valid = 500 GSM8K train problems, test = GSM8K test (same order). A few rows have an empty cot. "
    "Split 'train' is hub-only (da03 train.txt is a Git LFS object, not held locally).",
))

register(BenchmarkSpec(
    name="gsm8k-aug-nl", version=1,
    description="GSM8k-Aug-NL (CODI): GSM8k-Aug with natural-language CoT, steps split after '. '.",
    parse_row=icot_line_parser("gsm8k-aug-nl", natural_language=True),
    parse_hub_row=question_cot_answer_parser("gsm8k-aug-nl", natural_language=True),
    local_files={"train": "gsm8k_aug_icot/train_no_aug.txt"},
    hub_id="zen-E/GSM8k-Aug-NL", hub_splits={"train": "train", "valid": "validation", "test": "test"},
    prompt=ANSWER_IS_PROMPT, extraction="answer_is", grader="numeric",
    notes="CAUTION: locally 'train' is iCoT's train_no_aug.txt (6,973 GSM8K train problems, NOT augmented, "
    "natural-language CoT); source='auto' prefers it. Use source='hub' for the augmented train set.",
))

register(BenchmarkSpec(
    name="coconut-gsm", version=1,
    description="GSM8k-Aug valid/test in Coconut's JSON format {question, steps, answer}.",
    parse_row=coconut_parser("coconut-gsm", numeric=True),
    local_files={"valid": "coconut_gsm_json/gsm_valid.json", "test": "coconut_gsm_json/gsm_test.json"},
    prompt=ANSWER_IS_PROMPT, extraction="answer_is", grader="numeric",
    notes="Same problems as gsm8k-aug valid/test; the file's thousands commas ('5,000') are stripped from answers.",
))

register(BenchmarkSpec(
    name="svamp", version=1,
    description="SVAMP (Patel et al. 2021): 1,000 one-unknown arithmetic word problems with variations.",
    parse_row=svamp_parser("svamp"),
    local_files={"test": "svamp/SVAMP.json"},
    hub_id="ChilleD/SVAMP", hub_splits={"test": "train+test"},
    prompt=ANSWER_IS_PROMPT, extraction="answer_is", grader="numeric",
    notes="All 1,000 problems are the test set. ChilleD/SVAMP splits them 700/300, so the hub source "
    "reads 'train+test' (same problems, different order).",
))

register(BenchmarkSpec(
    name="gsm-hard", version=1,
    description="GSM-Hard (PAL, Gao et al. 2022): GSM8K test with numbers replaced by larger ones.",
    parse_row=input_target_parser("gsm-hard"),
    local_files={"test": "gsm_hard/gsmhardv2.jsonl"},
    hub_id="reasoning-machines/gsm-hard", hub_splits={"test": "train"},
    prompt=ANSWER_IS_PROMPT, extraction="answer_is", grader="numeric",
    notes="About 300 targets are non-integers (e.g. 14053029.666666666); they are written with 15 "
    "significant digits and the raw float is in meta['target_raw'].",
))

register(BenchmarkSpec(
    name="multiarith", version=1,
    description="MultiArith (Roy & Roth 2015): multi-step arithmetic word problems.",
    parse_row=multiarith_parser("multiarith"),
    parse_hub_row=multiarith_hub_parser("multiarith"),
    local_files={"test": "multiarith/MultiArith.json"},
    hub_id="ChilleD/MultiArith", hub_splits={"test": "train+test"},
    prompt=ANSWER_IS_PROMPT, extraction="answer_is", grader="numeric",
    notes="The full 600-row original (as in zero-shot-CoT). Some codebases report on ChilleD/MultiArith's "
    "180-row test split instead; Qwen2.5-Math's mawps/multiarith.jsonl is the same 600 problems.",
))

# Competition math (boxed answers, math_verify)

register(BenchmarkSpec(
    name="math", version=1,
    description="MATH (Hendrycks et al. 2021): 12.5k competition problems; answer = last \\boxed{} of the solution.",
    parse_row=math_solution_parser("math"),
    local_files={"train": "math_full_hendrycks/train.jsonl", "test": "math_full_hendrycks/test.jsonl"},
    hub_id="hendrycks/competition_math", hub_splits={"train": "train", "test": "test"},
    prompt=BOXED_PROMPT, extraction="boxed", grader="math_verify",  # or "math_hendrycks": MATH's own is_equiv
    notes="cot_steps = [solution]. Two train solutions box nothing ('\\boxed{}'); their answer is set "
    "to '0' (choice A) and meta['answer_erratum'] is True.",
))

register(BenchmarkSpec(
    name="math500", version=1,
    description="MATH-500 (Lightman et al. 2023): the 500-problem MATH test subset from PRM800K.",
    parse_row=problem_answer_parser("math500"),
    local_files={"test": "math500/test.jsonl"},
    hub_id="HuggingFaceH4/MATH-500", hub_splits={"test": "test"},
    prompt=BOXED_PROMPT, extraction="boxed", grader="math_verify",  # or "math_hendrycks": MATH's own is_equiv
))

register(BenchmarkSpec(
    name="aime24", version=1,
    description="AIME 2024 I and II: 30 problems with integer answers 0-999.",
    parse_row=problem_answer_parser("aime24", integer_answer=True),
    local_files={"test": "qwen25math_eval/aime24/test.jsonl"},
    hub_id="HuggingFaceH4/aime_2024", hub_splits={"test": "train"},
    prompt=BOXED_PROMPT, extraction="boxed", grader="math_verify",
    notes="Zero-padded answers in the file ('073') are stored without the padding ('73').",
))

register(BenchmarkSpec(
    name="aime25", version=1,
    description="AIME 2025 I and II: 30 problems with integer answers 0-999.",
    parse_row=soft_thinking_parser("aime25"),
    parse_hub_row=problem_answer_parser("aime25", integer_answer=True),
    local_files={"test": "aime2025_softthinking/aime2025.json"},
    hub_id="yentinglin/aime_2025", hub_splits={"test": "train"},
    prompt=BOXED_PROMPT, extraction="boxed", grader="math_verify",
))

register(BenchmarkSpec(
    name="amc23", version=1,
    description="AMC 2023: 40 problems (Qwen2.5-Math evaluation set), numeric answers.",
    parse_row=problem_answer_parser("amc23", integer_answer=True),
    local_files={"test": "qwen25math_eval/amc23/test.jsonl"},
    hub_id="math-ai/amc23", hub_splits={"test": "test"},
    prompt=BOXED_PROMPT, extraction="boxed", grader="math_verify",
))

# Multi-digit multiplication (iCoT format; exact match on the reversed-digit answer)

MULT_SIZES = (4, 5, 7, 9, 11)


def _mult_files(n: int) -> dict[str, str]:
    stepwise = f"mult_stepwise_internalization/{n}_by_{n}"
    if n in (4, 5):  # the 2023 implicit-CoT files; the 2024 test set is a different sample
        icot = f"mult_icot/{n}_by_{n}"
        return {
            "valid": f"{icot}/valid.txt",
            "test": f"{icot}/test_bigbench.txt",
            "test_2024": f"{stepwise}/test_bigbench.txt",
        }
    return {"valid": f"{stepwise}/valid.txt", "test": f"{stepwise}/test_bigbench.txt"}


for _n in MULT_SIZES:
    register(BenchmarkSpec(
        name=f"mult-{_n}x{_n}", version=1,
        description=f"{_n}-by-{_n}-digit multiplication, iCoT format (digits reversed, least significant first).",
        parse_row=multiplication_parser(f"mult-{_n}x{_n}"),
        local_files=_mult_files(_n),
        prompt="{question}\n", extraction="text", grader="exact",
        notes="Answer and steps are reversed digit strings; cot_steps = partial products (with running sums). "
        f"Training data: generate_multiplication({_n}, num_examples, seed) (the 808k-line train files are not held)."
        + (" 'test_2024' is the Stepwise-Internalization test set (no overlap with 'test')." if _n in (4, 5) else ""),
    ))

# Logical reasoning (Coconut format; exact match on the final sentence / True-False)

register(BenchmarkSpec(
    name="prosqa", version=1,
    description="ProsQA (Coconut, Hao et al. 2024): graph reachability over fictional concepts.",
    parse_row=coconut_parser("prosqa"),
    local_files={"valid": "prosqa/prosqa_valid.json", "test": "prosqa/prosqa_test.json"},
    prompt="{question}\n", extraction="text", grader="exact",
    notes="Answer is a sentence ('Sally is a sterpus.'); graph fields (edges, root, target, ...) are in meta. "
    "Train (17,886 rows) is not held locally.",
))

register(BenchmarkSpec(
    name="prontoqa", version=1,
    description="ProntoQA 5-hop (Coconut preprocessing): true/false questions over fictional ontologies.",
    parse_row=coconut_parser("prontoqa"),
    local_files={"valid": "prontoqa_coconut/prontoqa_valid.json", "test": "prontoqa_coconut/prontoqa_test.json"},
    prompt="{question}\n", extraction="text", grader="exact",
    notes="A third-party regeneration following Coconut's recipe (not Meta's files); answers are 'True'/'False'.",
))
