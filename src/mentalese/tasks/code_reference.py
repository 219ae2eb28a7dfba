"""What a code benchmark's `Example.answer` holds: the tests a candidate program must pass.

Code problems have no reference *answer* to compare with; they have tests. So, as lm-evaluation-harness
does for HumanEval (its target is the test program), a code example's answer is a `CodeReference`
serialised as JSON, and the `code` grader (evaluation/code_grading.py) runs the candidate against it.

    kind "assert"      prefix + candidate + test, one program (HumanEval: prompt + completion + test +
                       check(entry_point); MBPP: imports + code + assert lines); timeout_s for the whole program
    kind "stdio"       LiveCodeBench stdin/stdout problems: the candidate is a program, run once per test
                       with the test's input on stdin; its output is compared line by line; timeout_s per test
    kind "functional"  LiveCodeBench LeetCode problems: `Solution().<fn_name>(*args)` per test, args one JSON
                       value per input line, compared with the JSON output; timeout_s per test

LiveCodeBench ships most private tests compressed: base64(zlib(pickle(json string))). `private_tests` keeps
that string as it is (decompressed they can be tens of MB per problem) and `all_tests()` decodes it with
`decode_lcb_tests`, which unpickles with every global lookup refused: a pickle of a str (the official
format) loads, anything that would import or call code raises. Nothing here executes candidate code.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import pickle
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

from mentalese.errors import MentaleseError

REFERENCE_FORMAT = "mentalese-code-reference/1"
KINDS = ("assert", "stdio", "functional")
MAX_DECOMPRESSED_BYTES = 1 << 30  # a compressed test blob may not inflate past 1 GiB


@dataclass(frozen=True)
class CodeReference:
    kind: str
    prefix: str = ""  # source before the candidate (assert kind)
    test: str = ""  # source after the candidate (assert kind)
    public_tests: list[dict[str, str]] = field(default_factory=list)  # [{"input", "output"}] (stdio/functional)
    private_tests: list[dict[str, str]] | str = field(default_factory=list)  # or LiveCodeBench's compressed form
    fn_name: str = ""  # functional kind: the method of class Solution
    timeout_s: float = 3.0  # assert: the whole program; stdio/functional: each test

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MentaleseError(f"code reference kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.timeout_s > 0:
            raise MentaleseError(f"code reference timeout_s must be > 0, got {self.timeout_s}")
        if self.kind == "assert" and not self.test.strip():
            raise MentaleseError("code reference of kind 'assert' has no test code")
        if self.kind == "functional" and not self.fn_name:
            raise MentaleseError("code reference of kind 'functional' names no fn_name")

    def all_tests(self) -> list[dict[str, str]]:
        """Public then private tests as {"input", "output"} (stdio/functional kinds)."""
        private = self.private_tests
        if isinstance(private, str):
            private = decode_lcb_tests(private) if private else []
        return [{"input": t["input"], "output": t["output"]} for t in [*self.public_tests, *private]]

    def to_answer(self) -> str:
        return json.dumps({"format": REFERENCE_FORMAT, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_answer(cls, answer: str) -> "CodeReference":
        try:
            data = json.loads(answer)
        except (TypeError, ValueError):
            data = None
        if not isinstance(data, dict) or data.pop("format", None) != REFERENCE_FORMAT:
            head = answer[:60] if isinstance(answer, str) else repr(answer)
            raise MentaleseError(f"not a code reference (the `code` grader needs a code benchmark's answer): {head!r}")
        try:
            return cls(**data)
        except TypeError as e:
            raise MentaleseError(f"malformed code reference: {e}") from None


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Loads plain data only: any class, function or persistent id (how a pickle runs code) is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid: Any):
        raise pickle.UnpicklingError("refused persistent id")


def decode_lcb_tests(text: str) -> list[dict[str, str]]:
    """LiveCodeBench test cases from their JSON text, or from the compressed form of the official loader
    (lcb_runner/benchmarks/code_generation.py: base64, then zlib, then a pickle holding the JSON text).

    The pickle must hold a str; it is read by an unpickler that refuses every global, so it cannot import
    or call anything. Risk that remains: a hostile blob can still cost memory (capped at 1 GiB inflated).
    """
    try:
        tests = json.loads(text)
    except ValueError:
        tests = _json_from_compressed(text)
    if not isinstance(tests, list) or not all(
            isinstance(t, dict) and isinstance(t.get("input"), str) and isinstance(t.get("output"), str) for t in tests):
        raise MentaleseError("LiveCodeBench tests must be a list of {input: str, output: str, testtype} objects")
    return tests


def _json_from_compressed(text: str) -> Any:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        inflater = zlib.decompressobj()
        pickled = inflater.decompress(raw, MAX_DECOMPRESSED_BYTES)
        if inflater.unconsumed_tail:
            raise MentaleseError(f"LiveCodeBench tests inflate past {MAX_DECOMPRESSED_BYTES} bytes; refused")
        inner = _NoGlobalsUnpickler(io.BytesIO(pickled)).load()
    except MentaleseError:
        raise
    except (UnicodeEncodeError, binascii.Error, zlib.error, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise MentaleseError(f"LiveCodeBench tests are neither JSON nor the official compressed form ({e})") from None
    if not isinstance(inner, str):
        raise MentaleseError(f"LiveCodeBench compressed tests must unpickle to a JSON string, got {type(inner).__name__}")
    try:
        return json.loads(inner)
    except ValueError as e:
        raise MentaleseError(f"LiveCodeBench compressed tests hold malformed JSON ({e})") from None


def encode_lcb_tests(tests: list[dict[str, str]]) -> str:
    """The official compressed form (to write fixtures in the released format)."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode("ascii")
