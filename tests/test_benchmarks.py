"""Built-in benchmarks: every local file loads with the manifest's row count, parsers, helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalese.errors import MentaleseError
from mentalese.tasks.benchmarks import format_multiplication_line, generate_multiplication
from mentalese.tasks.formats import last_boxed, normalize_number
from mentalese.tasks.registry import get_benchmark, list_benchmarks, load_benchmark

# Row counts from the data manifest (MANIFEST.md), one entry per local file a spec claims.
MANIFEST_ROWS = {
    "gsm8k/train.jsonl": 7473,
    "gsm8k/test.jsonl": 1319,
    "gsm8k_aug_icot/valid.txt": 500,
    "gsm8k_aug_icot/test.txt": 1319,
    "gsm8k_aug_icot/train_no_aug.txt": 6973,
    "coconut_gsm_json/gsm_valid.json": 500,
    "coconut_gsm_json/gsm_test.json": 1319,
    "svamp/SVAMP.json": 1000,
    "gsm_hard/gsmhardv2.jsonl": 1319,
    "multiarith/MultiArith.json": 600,
    "math_full_hendrycks/train.jsonl": 7500,
    "math_full_hendrycks/test.jsonl": 5000,
    "math500/test.jsonl": 500,
    "qwen25math_eval/aime24/test.jsonl": 30,
    "aime2025_softthinking/aime2025.json": 30,
    "qwen25math_eval/amc23/test.jsonl": 40,
    "mult_icot/4_by_4/valid.txt": 1000,
    "mult_icot/4_by_4/test_bigbench.txt": 1000,
    "mult_icot/5_by_5/valid.txt": 1000,
    "mult_icot/5_by_5/test_bigbench.txt": 1000,
    "mult_stepwise_internalization/4_by_4/test_bigbench.txt": 1000,
    "mult_stepwise_internalization/5_by_5/test_bigbench.txt": 1000,
    "mult_stepwise_internalization/7_by_7/valid.txt": 1000,
    "mult_stepwise_internalization/7_by_7/test_bigbench.txt": 1000,
    "mult_stepwise_internalization/9_by_9/valid.txt": 1000,
    "mult_stepwise_internalization/9_by_9/test_bigbench.txt": 1000,
    "mult_stepwise_internalization/11_by_11/valid.txt": 1000,
    "mult_stepwise_internalization/11_by_11/test_bigbench.txt": 1000,
    "prosqa/prosqa_valid.json": 300,
    "prosqa/prosqa_test.json": 500,
    "prontoqa_coconut/prontoqa_valid.json": 200,
    "prontoqa_coconut/prontoqa_test.json": 800,
}

EXPECTED_NAMES = {
    "gsm8k", "gsm8k-eq", "gsm8k-aug", "gsm8k-aug-nl", "coconut-gsm", "svamp", "gsm-hard", "multiarith",
    "math", "math500", "aime24", "aime25", "amc23", "mult-4x4", "mult-5x5", "mult-7x7", "mult-9x9",
    "mult-11x11", "prosqa", "prontoqa",
}  # fmt: skip


def _claims() -> list[tuple[str, str, str]]:
    return [
        (name, split, rel)
        for name in list_benchmarks()
        for split, rel in get_benchmark(name).local_files.items()
    ]


def test_all_benchmarks_registered():
    assert EXPECTED_NAMES <= set(list_benchmarks())


def test_every_claimed_file_is_in_the_manifest_table():
    assert {rel for _, _, rel in _claims()} == set(MANIFEST_ROWS)


def test_specs_are_complete():
    for name in EXPECTED_NAMES:
        spec = get_benchmark(name)
        assert spec.version == 1 and spec.description and "\n" not in spec.description
        assert spec.extraction in ("answer_is", "boxed", "hash", "text")
        assert spec.grader in ("numeric", "math_verify", "math_hendrycks", "exact")
        assert "{question}" in spec.prompt
        assert spec.generator is None
        assert spec.default_split in spec.splits


@pytest.mark.parametrize("name,split,rel", _claims(), ids=lambda v: v if isinstance(v, str) else None)
def test_local_file_row_count(name, split, rel):
    examples = load_benchmark(name, split, source="local")
    assert len(examples) == MANIFEST_ROWS[rel]
    assert [e.id for e in examples[:2]] == [f"{split}-0", f"{split}-1"]
    assert all(e.question.strip() and e.answer.strip() for e in examples)


def _first(name, split):
    return load_benchmark(name, split, source="local", limit=1)[0]


def test_gsm8k_first_rows():
    e = _first("gsm8k", "test")
    assert e.question.startswith("Janet’s ducks lay 16 eggs per day.")
    assert e.answer == "18"
    assert e.cot_steps == [
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day.",
        "She makes 9 * 2 = $18 every day at the farmer’s market.",
    ]
    assert e.meta["equations"] == ["<<16-3-4=9>>", "<<9*2=18>>"]
    e = _first("gsm8k", "train")
    assert e.answer == "72"
    assert e.cot_steps[0] == "Natalia sold 48/2 = 24 clips in May."
    assert e.meta["equations"] == ["<<48/2=24>>", "<<48+24=72>>"]
    e = _first("gsm8k-eq", "train")
    assert e.cot_steps == ["<<48/2=24>>", "<<48+24=72>>"] and e.answer == "72"


def test_gsm8k_answers_drop_commas():
    answers = [e.answer for e in load_benchmark("gsm8k", "test")]
    assert "2125" in answers and not any("," in a for a in answers)


def test_gsm8k_aug_first_rows():
    e = _first("gsm8k-aug", "test")
    assert e.question.startswith("Janet’s ducks lay 16 eggs per day.")
    assert e.cot_steps == ["<<16-3-4=9>>", "<<9*2=18>>"] and e.answer == "18"
    e = _first("gsm8k-aug", "valid")
    assert e.question.startswith("John cuts his grass to 2 inches.")
    assert e.cot_steps == ["<<4-2=2>>", "<<2/.5=4>>", "<<12/4=3>>", "<<100*3=300>>"] and e.answer == "300"
    empty = load_benchmark("gsm8k-aug", "test")[24]  # "|| #### 26": an empty cot in the file
    assert empty.cot_steps == [] and empty.answer == "26"


def test_gsm8k_eq_matches_gsm8k_aug_on_shared_problems():
    # GSM8k-Aug valid = 500 GSM8K train problems; their equation CoT is GSM8K's own annotations.
    train = {e.question: e for e in load_benchmark("gsm8k-eq", "train")}
    for e in load_benchmark("gsm8k-aug", "valid"):
        assert train[e.question].cot_steps == e.cot_steps and train[e.question].answer == e.answer


def test_gsm8k_aug_nl_local_train(data_dir):
    e = _first("gsm8k-aug-nl", "train")
    assert e.question.startswith("The town’s annual budget totals $32 million.")
    assert e.answer == "4"
    assert e.cot_steps == [
        "The annual budget for policing is 32 / 2 = $16 million.",
        "The combined budget for education and policing is 16 + 12 = $28 million.",
        "There is 32 - 28 = $4 million to manage public spaces.",
    ]
    line = (data_dir / "gsm8k_aug_icot/train_no_aug.txt").read_text(encoding="utf-8").splitlines()[0]
    assert e.cot_text() == line.split("||")[1].split(" #### ")[0]


def test_coconut_gsm_first_rows():
    e = _first("coconut-gsm", "test")
    assert e.cot_steps == ["<<16-3-4=9>>", "<<9*2=18>>"] and e.answer == "18"
    assert [e.answer for e in load_benchmark("coconut-gsm", "valid") if e.answer == "5000"]  # file has "5,000"


def test_word_problem_first_rows():
    e = _first("svamp", "test")
    assert e.question == (
        "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack "
        "How much do you have to pay to buy each pack?"
    )
    assert e.answer == "51" and e.meta["Equation"] == "( 76.0 - 25.0 )" and e.meta["ID"] == "chal-1"
    e = _first("gsm-hard", "test")
    assert e.question.startswith("Janet’s ducks lay 16 eggs per day.") and "4933828" in e.question
    assert e.answer == "-9867630"
    hard = {e.answer for e in load_benchmark("gsm-hard", "test")}
    assert "3244047.1" in hard and "14053029.6666667" in hard  # float noise removed
    e = _first("multiarith", "test")
    assert e.question.startswith("For Halloween Debby and her sister combined the candy they received.")
    assert e.question == e.question.strip() and e.answer == "39"


def test_competition_math_first_rows():
    e = _first("math", "test")
    assert e.question.startswith("How many vertical asymptotes does the graph of $y=")
    assert e.answer == "2" and len(e.cot_steps) == 1 and e.cot_steps[0].endswith("$\\boxed{2}$ vertical asymptotes.")
    assert e.meta == {"level": "Level 3", "type": "Algebra", "unique_id": "test/algebra/1.json"}
    assert _first("math", "train").answer == "0"
    e = _first("math500", "test")
    assert e.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert e.question.startswith("Convert the point $(0,3)$ in rectangular coordinates")
    e = _first("aime24", "test")
    assert e.question.startswith("Every morning Aya goes for a $9$-kilometer-long walk") and e.answer == "204"
    assert load_benchmark("aime24", "test")[15].answer == "73"  # "073" in the file
    e = _first("aime25", "test")
    assert e.question == "Find the sum of all integer bases $b>9$ for which $17_b$ is a divisor of $97_b.$"
    assert e.answer == "70"
    e = _first("amc23", "test")
    assert e.question.startswith("Cities $A$ and $B$ are $45$ miles apart.") and e.answer == "27"


def test_math_boxed_agrees_with_math500_answers():
    test = {e.meta["unique_id"]: e for e in load_benchmark("math", "test")}
    for e in load_benchmark("math500", "test"):
        assert test[e.meta["unique_id"]].answer == e.answer, e.meta["unique_id"]


def test_math_empty_box_errata():
    fixed = [e for e in load_benchmark("math", "train") if e.meta.get("answer_erratum")]
    assert [e.meta["unique_id"] for e in fixed] == ["train/number_theory/7115.json", "train/number_theory/7117.json"]
    assert [e.answer for e in fixed] == ["0", "0"]


def test_multiplication_first_rows():
    e = _first("mult-4x4", "valid")
    assert e.question == "5 6 3 2 * 7 4 3 4"
    assert e.answer == "5 5 6 0 8 2 0 1"
    assert e.cot_steps == [
        "5 5 5 6 1",
        "0 0 6 4 9 0 ( 5 5 1 1 1 1 )",
        "0 0 5 9 0 7 0 ( 5 5 6 0 2 8 0 )",
        "0 0 0 0 6 4 9 0",
    ]
    assert e.meta == {"a": 2365, "b": 4347} and 2365 * 4347 == 10280655
    assert _first("mult-4x4", "test").question == "1 3 4 5 * 8 1 9 3"
    assert _first("mult-4x4", "test_2024").answer == "7 8 0 3 7 8 8 1"
    assert _first("mult-5x5", "test").answer == "4 8 9 5 8 8 9 3 9 2"
    assert _first("mult-11x11", "valid").cot_steps[0] == " ".join("0" * 12)


def test_prosqa_prontoqa_first_rows():
    e = _first("prosqa", "test")
    assert e.question.endswith("Is Sally a hilpus or sterpus?") and e.answer == "Sally is a sterpus."
    assert e.cot_steps == ["Sally is a scrompus.", "Every scrompus is a rempus.", "Every rempus is a sterpus."]
    assert e.meta["root"] == 1 and e.meta["target"] == 21
    assert _first("prosqa", "valid").answer == "Tom is a lempus."
    e = _first("prontoqa", "valid")
    assert e.question.endswith("True or false: Alex is happy.") and e.answer == "True"
    assert e.cot_steps[0] == "Alex is a tumpus. Tumpuses are gorpuses." and e.cot_steps[-1] == "Alex is happy."
    assert {e.answer for e in load_benchmark("prontoqa", "test")} == {"True", "False"}


# ------------------------------------------------------------------------------------------
# Multiplication format and generator


def _operands(line: str) -> tuple[int, int]:
    left, right = line.split("||")[0].split(" * ")
    return int("".join(reversed(left.split()))), int("".join(reversed(right.split())))


@pytest.mark.parametrize("name", ["mult-4x4", "mult-5x5", "mult-7x7", "mult-9x9", "mult-11x11"])
def test_multiplication_format_reproduces_every_local_line(name, data_dir):
    spec = get_benchmark(name)
    for rel in spec.local_files.values():
        for line in (data_dir / rel).read_text(encoding="utf-8").splitlines():
            assert format_multiplication_line(*_operands(line)) == line


def test_generate_multiplication_deterministic_and_well_formed():
    first = generate_multiplication(4, num_examples=200, seed=3)
    again = generate_multiplication(4, num_examples=200, seed=3)
    other = generate_multiplication(4, num_examples=200, seed=4)
    assert [e.to_dict() for e in first] == [e.to_dict() for e in again]
    assert [e.question for e in first] != [e.question for e in other]
    assert len({e.question for e in first}) == 200
    for e in first:
        a, b = e.meta["a"], e.meta["b"]
        assert 1000 <= a <= 9999 and 1000 <= b <= 9999
        line = f"{e.question}||{' + '.join(e.cot_steps)} #### {e.answer}"
        assert line == format_multiplication_line(a, b)
        assert int("".join(reversed(e.answer.split()))) == a * b
    assert [e.id for e in first[:2]] == ["train-0", "train-1"]


def test_generate_multiplication_default_size_and_exclusion():
    assert len(generate_multiplication(5)) == 10000
    taken = {e.question for e in generate_multiplication(2, num_examples=50, seed=0)}
    fresh = generate_multiplication(2, num_examples=50, seed=0, exclude_questions=taken)
    assert not taken & {e.question for e in fresh}
    with pytest.raises(MentaleseError, match="do not exist"):
        generate_multiplication(1, num_examples=1000)


def test_generated_lines_parse_like_local_lines(tmp_path):
    lines = [format_multiplication_line(e.meta["a"], e.meta["b"]) for e in generate_multiplication(7, 20, seed=1)]
    path = tmp_path / "mult_stepwise_internalization/7_by_7/valid.txt"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    loaded = load_benchmark("mult-7x7", "valid", data_dir=tmp_path, source="local")
    assert [e.to_dict() | {"id": ""} for e in loaded] == [
        e.to_dict() | {"id": ""} for e in generate_multiplication(7, 20, seed=1)
    ]


# ------------------------------------------------------------------------------------------
# Helpers


@pytest.mark.parametrize(
    "text,expected",
    [
        ("so $\\boxed{2}$.", "2"),
        ("$\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("first \\boxed{1} then \\boxed{{a}^{b_{c}}} end", "{a}^{b_{c}}"),
        ("\\fbox{7} and more", "7"),
        ("\\boxed{3} then \\fbox{4}", "4"),
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
        ("\\boxed{\\left\\{ x \\right.}", "\\left\\{ x \\right."),
        ("answer $\\boxed 9$.", "9"),
        ("\\boxed {12}", "12"),
        ("\\boxed{}", ""),
        ("no box here", None),
        ("\\boxed{\\frac{1}{2}", None),
        ("\\boxed", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    "value,expected",
    [
        ("5,000", "5000"), ("18", "18"), (" -3 ", "-3"), (51.0, "51"), ("51.0", "51"), ("-7.50", "-7.5"),
        ("073", "73"), (39, "39"), (-1.0, "-1"), (3244047.0999999996, "3244047.1"), (0.0016791648, "0.0016791648"),
        (".5", "0.5"), ("-0.0", "0"), (1e-05, "0.00001"), ("1,450,000", "1450000"),
    ],
)  # fmt: skip
def test_normalize_number(value, expected):
    assert normalize_number(value, "b", "r") == expected


@pytest.mark.parametrize("value", ["abc", "", "12 apples", None, True, float("nan"), [1]])
def test_normalize_number_rejects(value):
    with pytest.raises(MentaleseError, match=r"b row r: unparseable number"):
        normalize_number(value, "b", "r")


# ------------------------------------------------------------------------------------------
# Malformed rows: one bad row (the second) per parser family, in a temporary data dir

GOOD_GSM8K = {"question": "What is 1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"}
MALFORMED = [
    ("gsm8k", "test", [GOOD_GSM8K, {"question": "Q?", "answer": "no final answer"}], "no '####'"),
    ("gsm8k", "test", [GOOD_GSM8K, {"answer": "#### 2"}], "missing field 'question'"),
    ("gsm8k", "test", [GOOD_GSM8K, {"question": "Q?", "answer": "#### two"}], "unparseable number 'two'"),
    ("gsm8k-aug", "test", ["q?||<<1+1=2>> #### 2", "q?||<<1+1=2>> 2"], "no '####'"),
    ("gsm8k-aug", "test", ["q?||<<1+1=2>> #### 2", "q? <<1+1=2>> #### 2"], "no '||'"),
    ("gsm8k-aug-nl", "train", ["q?||One. Two. #### 2", "q?||One. #### 2.5.1"], "unparseable number"),
    ("coconut-gsm", "test",
     [{"question": "q", "steps": [], "answer": "2"}, {"question": "q", "steps": "x", "answer": "2"}],
     "field 'steps' should be list"),
    ("prosqa", "test", [{"question": "q", "steps": ["s"], "answer": "a"}, {"question": "q", "steps": ["s"]}],
     "missing field 'answer'"),
    ("svamp", "test", [{"Body": "b", "Question": "q", "Answer": 1.0}, {"Body": "b", "Question": "q"}],
     "missing field 'Answer'"),
    ("gsm-hard", "test", [{"input": "q", "target": 1.0}, {"input": "q", "target": "n/a"}], "unparseable number 'n/a'"),
    ("multiarith", "test", [{"sQuestion": "q", "lSolutions": [3.0]}, {"sQuestion": "q", "lSolutions": []}],
     "'lSolutions' is empty"),
    ("math", "test", [{"problem": "p", "solution": "\\boxed{1}"}, {"problem": "p", "solution": "it is 1"}],
     "no complete, non-empty \\\\boxed"),
    ("math500", "test", [{"problem": "p", "answer": "1"}, {"problem": "p", "answer": ""}], "field 'answer' is empty"),
    ("aime24", "test", [{"problem": "p", "answer": "1"}, {"problem": "p", "answer": "one"}], "unparseable number"),
    ("aime25", "test", [{"prompt": [{"from": "user", "value": "p"}], "final_answer": "1"},
                        {"prompt": [{"from": "assistant", "value": "p"}], "final_answer": "1"}], "no user turn"),
    ("mult-4x4", "valid", ["1 2 * 3 4||3 6 0 + 0 4 8 0 #### 3 0 1 1", "1 x * 3 4||3 6 0 #### 3 0 1 1"],
     "first operand is not a space-separated digit string"),
    ("mult-4x4", "valid", ["1 2 * 3 4||3 6 0 + 0 4 8 0 #### 3 0 1 1", "1 2 + 3 4||3 6 0 #### 3 0 1 1"],
     "not of the form 'a \\* b'"),
]  # fmt: skip


def _write_rows(root: Path, rel: str, rows: list) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if rel.endswith(".txt"):
        text = "\n".join(rows) + "\n"
    elif rel.endswith(".jsonl"):
        text = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        text = json.dumps(rows)
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("name,split,rows,problem", MALFORMED, ids=[f"{m[0]}-{i}" for i, m in enumerate(MALFORMED)])
def test_malformed_row_names_row_and_problem(tmp_path, name, split, rows, problem):
    rel = get_benchmark(name).local_files[split]
    _write_rows(tmp_path, rel, rows)
    with pytest.raises(MentaleseError, match=rf"^{name} row {split}-1: .*{problem}") as info:
        load_benchmark(name, split, data_dir=tmp_path, source="local")
    assert "\n" not in str(info.value)
    # the good first row alone loads
    _write_rows(tmp_path, rel, rows[:1])
    assert len(load_benchmark(name, split, data_dir=tmp_path, source="local")) == 1


def _hub_parse(name: str, row: dict, row_id: str = "test-0"):
    spec = get_benchmark(name)
    return (spec.parse_hub_row or spec.parse_row)(row, row_id)


def test_hub_row_schemas():
    # No network in tests: call the hub parsers directly on rows shaped like the hub datasets.
    e = _hub_parse("gsm8k-aug", {"question": "q", "cot": "<<1+1=2>> <<2*3=6>>", "answer": "6"}, "train-0")
    assert e.cot_steps == ["<<1+1=2>>", "<<2*3=6>>"] and e.answer == "6"
    cot = "Add 1 and 1 to get 2. Multiply 2 by 3 to get 6."
    e = _hub_parse("gsm8k-aug-nl", {"question": "q", "cot": cot, "answer": "6"})
    assert e.cot_steps == ["Add 1 and 1 to get 2.", "Multiply 2 by 3 to get 6."]
    e = _hub_parse("multiarith", {"question": " q ", "final_ans": "39"})
    assert (e.question, e.answer) == ("q", "39")
    e = _hub_parse("aime25", {"id": 0, "problem": "p", "answer": "070"})
    assert e.answer == "70"
    e = _hub_parse("amc23", {"id": 0, "question": "p", "answer": 27.0})
    assert e.answer == "27"
    e = _hub_parse("aime24", {"id": 60, "problem": "p", "solution": "s", "answer": "204", "url": "u", "year": 2024})
    assert (e.answer, e.cot_steps) == ("204", ["s"])
    row = {"problem": "p", "solution": "$\\boxed{\\frac{1}{2}}$", "level": "Level 1", "type": "Algebra"}
    assert _hub_parse("math", row).answer == "\\frac{1}{2}"
    row = {"problem": "p", "solution": "s", "answer": "\\pi", "subject": "Algebra", "level": 1, "unique_id": "u"}
    assert _hub_parse("math500", row).answer == "\\pi"
    row = {"ID": "chal-1", "Body": "b.", "Question": "q?", "Equation": "( 1 + 1 )", "Answer": 2.0, "Type": "Addition"}
    assert (_hub_parse("svamp", row).question, _hub_parse("svamp", row).answer) == ("b. q?", "2")
    assert _hub_parse("gsm-hard", {"input": "q", "code": "c", "target": 2.5}).answer == "2.5"
    assert _hub_parse("gsm8k", GOOD_GSM8K).meta["equations"] == ["<<1+1=2>>"]
    assert get_benchmark("gsm-hard").hub_splits == {"test": "train"}
    assert get_benchmark("gsm8k").hub_config == "main"


# ------------------------------------------------------------------------------------------
# Registry errors


def test_unknown_benchmark():
    with pytest.raises(MentaleseError, match="unknown benchmark 'no-such-bench'"):
        load_benchmark("no-such-bench")


def test_unknown_split():
    with pytest.raises(MentaleseError, match="has no split 'nope'"):
        load_benchmark("gsm8k", "nope")


def test_missing_local_file_mentions_data_dir(tmp_path):
    with pytest.raises(MentaleseError, match="MENTALESE_DATA_DIR") as info:
        load_benchmark("gsm8k", "test", data_dir=tmp_path, source="local")
    assert "gsm8k/test.jsonl" in str(info.value)
    with pytest.raises(MentaleseError, match="MENTALESE_DATA_DIR"):  # hub-only split, forced local
        load_benchmark("gsm8k-aug", "train", source="local")
    with pytest.raises(MentaleseError, match="no hub source"):
        load_benchmark("prosqa", "test", data_dir=tmp_path)


def test_empty_local_file_is_a_clear_error(tmp_path):
    (tmp_path / "svamp").mkdir()
    (tmp_path / "svamp" / "SVAMP.json").write_text("[]")
    with pytest.raises(MentaleseError, match="split 'test' is empty"):
        load_benchmark("svamp", "test", data_dir=tmp_path)
