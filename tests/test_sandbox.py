"""The sandbox for model-written programs, attacked by hostile programs (evaluation/sandbox.py).

Every batch runs in a driver process under an OUTER bound built here, so that a sandbox bug fails the test
instead of the machine: as root a pids+memory cgroup (v1) and `timeout -s KILL`; as a user RLIMIT_NPROC and
RLIMIT_AS and the same timeout. Each hostile program is followed in its batch by a passing one, and after
each batch the machine is checked: no process left in the outer cgroup or working in our temp dirs, no
cgroup left, no temp dir left, no file written outside.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from mentalese.errors import MentaleseError
from mentalese.evaluation import sandbox
from mentalese.evaluation.sandbox import SandboxLimits, run_program

REPO = Path(__file__).resolve().parents[1]
IS_ROOT = sys.platform.startswith("linux") and os.geteuid() == 0
PASSING = "def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nprint('passed')\n"
SMALL = {"memory_bytes": 256 << 20, "workdir_bytes": 16 << 20, "file_size_bytes": 4 << 20,
         "max_processes": 16, "output_bytes": 64 << 10}
OUTER_PIDS, OUTER_MEMORY, OUTER_TIMEOUT_S = 96, 1 << 30, 20
DRIVER = r"""
import json, os, sys
from mentalese.evaluation import sandbox
spec = json.loads(open(sys.argv[1]).read())
if spec["weak"]:  # exercise the layers left without namespaces (rlimits, uid drop, group and cgroup kill)
    sandbox.sandbox_support = lambda: {"platform": "linux", "root": os.geteuid() == 0, "namespaces": False,
                                       "strong": False}
results = sandbox.run_programs(spec["programs"], workers=spec["workers"], timeout_s=spec["timeout_s"],
                               limits=sandbox.SandboxLimits(**spec["limits"]), allow_weak_sandbox=spec["weak"])
open(sys.argv[2], "w").write(json.dumps([r.__dict__ for r in results]))
"""


def _cgroup_v1_dirs(name: str) -> dict[str, Path] | None:
    own = {c: p for line in Path("/proc/self/cgroup").read_text().splitlines()
           for _id, cs, p in [line.split(":", 2)] for c in cs.split(",")}
    dirs = {c: Path(f"/sys/fs/cgroup/{c}{own.get(c, '/').rstrip('/')}/{name}") for c in ("pids", "memory")}
    if not all(d.parent.joinpath("cgroup.procs").exists() for d in dirs.values()):
        return None
    return dirs


def _procs_below(directory: Path) -> set[int]:
    return {int(p) for f in directory.rglob("cgroup.procs") for p in f.read_text().split()}


def _kill_and_remove(directory: Path) -> None:
    deadline = time.monotonic() + 10
    while (pids := _procs_below(directory)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    for sub in sorted(directory.rglob("*"), key=lambda p: -len(p.parts)):
        if sub.is_dir():
            sub.rmdir()
    directory.rmdir()


def _processes_working_in(base: Path) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/cwd").startswith(str(base)):
                found.append(f"{entry}: {Path(f'/proc/{entry}/cmdline').read_bytes()!r}")
        except OSError:
            pass
    return found


def run_bounded(programs: list[str], timeout_s: float = 2.0, workers: int = 2, weak: bool = False,
                **limits) -> list[dict]:
    """run_programs in a driver under the outer bound; asserts the machine is left as it was."""
    base = Path(tempfile.mkdtemp(prefix="mentalese-sandbox-test-"))
    spec = base / "spec.json"
    spec.write_text(json.dumps({"programs": programs, "timeout_s": timeout_s, "workers": workers, "weak": weak,
                                "limits": {**SMALL, **limits}}))
    runs = base / "runs"
    runs.mkdir()
    for d in (base, runs):
        d.chmod(0o711)  # without namespaces the program (nobody) runs in a dir below it
    env = {**os.environ, "TMPDIR": str(runs), "MENTALESE_TEST_SECRET": "hunter2-" + base.name}
    command = ["timeout", "-s", "KILL", str(OUTER_TIMEOUT_S), sys.executable, "-c", DRIVER, str(spec),
               str(base / "results.json")]
    dirs = _cgroup_v1_dirs(f"mentalese-test-outer-{uuid.uuid4().hex[:10]}") if IS_ROOT else None
    try:
        if IS_ROOT:
            if dirs is None:
                pytest.skip("root without cgroup v1 pids+memory: no outer bound for hostile programs")
            for d in dirs.values():
                d.mkdir()
            (dirs["pids"] / "pids.max").write_text(str(OUTER_PIDS))
            (dirs["memory"] / "memory.limit_in_bytes").write_text(str(OUTER_MEMORY))
            join = " && ".join(f"echo $$ > {d}/cgroup.procs" for d in dirs.values())
            done = subprocess.run(["sh", "-c", join + ' && exec "$@"', "sh", *command], env=env,
                                  stdin=subprocess.DEVNULL, timeout=OUTER_TIMEOUT_S + 5)
        else:
            def bound():  # a user's RLIMIT_NPROC is enforced (it counts all of the user's processes)
                mine = sum(1 for e in os.listdir("/proc")
                           if e.isdigit() and os.stat(f"/proc/{e}").st_uid == os.getuid())
                resource.setrlimit(resource.RLIMIT_NPROC, (mine + OUTER_PIDS, mine + OUTER_PIDS))
                resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

            done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, preexec_fn=bound,
                                  timeout=OUTER_TIMEOUT_S + 5)
        assert done.returncode == 0, f"the driver failed ({done.returncode}): the sandbox let something through"
        if dirs:
            left = {p: Path(f"/proc/{p}/status").read_text().split("\n")[8] for p in _procs_below(dirs["pids"])}
            assert not left, f"processes outlived the sandbox: {left}"
            assert not [d for c in dirs.values() for d in c.iterdir() if d.is_dir()], "a sandbox cgroup is left"
        assert not _processes_working_in(runs), _processes_working_in(runs)
        assert not list(runs.iterdir()), f"temp dirs left: {list(runs.iterdir())}"
        return json.loads((base / "results.json").read_text())
    finally:
        if dirs:
            for d in dirs.values():
                if d.exists():
                    _kill_and_remove(d)
        sandbox._remove_tree(str(base))


def assert_next_passes(results: list[dict]) -> None:
    assert results[-1]["passed"] and results[-1]["reason"] == "ok", results[-1]
    assert results[-1]["stdout_tail"] == "passed\n"


def test_passing_and_failing_programs():
    failing = PASSING.replace("== 5", "== 6")
    results = run_bounded([PASSING, failing, "import sys\nsys.exit(3)\n", PASSING])
    assert [r["reason"] for r in results] == ["ok", "exit 1", "exit 3", "ok"]
    assert [r["returncode"] for r in results] == [0, 1, 3, 0]
    assert "AssertionError" in results[1]["stderr_tail"] and not results[1]["passed"]


def test_infinite_loop_times_out():
    results = run_bounded(["while True:\n    pass\n", PASSING], timeout_s=1.0)
    assert results[0]["reason"] == "timeout" and not results[0]["passed"]
    assert 1.0 <= results[0]["duration_s"] < 3.0  # the wall timeout, plus slack for a loaded machine
    assert_next_passes(results)


def test_fork_bomb_is_contained():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    results = run_bounded([bomb, PASSING], timeout_s=1.0)
    assert results[0]["reason"] == "timeout" and results[0]["duration_s"] < 3.0
    assert_next_passes(results)


def test_memory_exhaustion_one_process_and_many():
    one = "blocks = []\nwhile True:\n    blocks.append(bytearray(1 << 24))\n"
    many = ("import os\nkids = []\nfor _ in range(4):\n    pid = os.fork()\n    if pid == 0:\n"
            "        block = b'x' * (160 << 20)\n        import time; time.sleep(1)\n        os._exit(0)\n"
            "    kids.append(pid)\nassert all(os.waitpid(k, 0)[1] == 0 for k in kids)\n")
    programs = [one, PASSING, many, PASSING] if IS_ROOT else [one, PASSING]
    results = run_bounded(programs, timeout_s=5.0)
    assert results[0]["reason"] == "memory" and "MemoryError" in results[0]["stderr_tail"]
    if IS_ROOT:  # 4 x 160 MiB, each within its RLIMIT_AS, together past the memory cgroup
        assert results[2]["reason"] == "memory", results[2]
    assert_next_passes(results)


def test_output_and_file_limits():
    flood = "import sys\nblock = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(block)\n"
    big_file = "with open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'x' * (1 << 20))\n"
    fill = "for i in range(64):\n    with open(f'part{i}', 'wb') as f:\n        f.write(b'x' * (3 << 20))\n"
    results = run_bounded([flood, PASSING, big_file, fill, PASSING], timeout_s=5.0)
    assert results[0]["reason"] == "output-limit" and results[0]["duration_s"] < 2.0
    assert len(results[0]["stdout_tail"]) == sandbox.TAIL_CHARS
    assert results[2]["reason"] == "exit 1" and "File too large" in results[2]["stderr_tail"]
    assert results[3]["reason"] == "exit 1" and "No space left on device" in results[3]["stderr_tail"]
    assert_next_passes(results)


def test_writes_outside_the_temp_dir_fail(tmp_path):
    marker = f"mentalese-escape-{uuid.uuid4().hex[:8]}"
    shared = Path(tempfile.mkdtemp(prefix="mentalese-canary-", dir="/var/tmp"))
    shared.chmod(0o777)  # world-writable, no sticky bit: nobody could delete the canary without the sandbox
    canary = shared / "canary.txt"
    canary.write_text("alive")
    canary.chmod(0o666)
    targets = [str(REPO / marker), f"/root/{marker}", f"/dev/shm/{marker}", f"/var/tmp/{marker}",
               f"/{marker}", f"../{marker}", str(shared / marker)]
    program = (
        "import json, os\noutcome = {}\n"
        "def attempt(name, action):\n    try:\n        action()\n        outcome[name] = 'done'\n"
        "    except OSError as e:\n        outcome[name] = e.strerror\n"
        f"for target in {targets!r}:\n    attempt(target, lambda: open(target, 'w').write('x'))\n"
        f"attempt('delete', lambda: os.remove({str(canary)!r}))\n"
        f"attempt('rename', lambda: os.rename({str(canary)!r}, {str(canary)!r} + '.moved'))\n"
        f"attempt('append', lambda: open({str(canary)!r}, 'a').write('x'))\n"
        "attempt('local', lambda: open('local.txt', 'w').write('x'))\n"
        f"attempt('tmp', lambda: open('/tmp/{marker}', 'w').write('x'))\n"
        "print(json.dumps(outcome))\n"
        f"open('/var/tmp/{marker}', 'w')\n")
    try:
        results = run_bounded([program, PASSING])
        outcome = json.loads(results[0]["stdout_tail"])
        assert outcome.pop("local") == "done"  # its own working directory is writable: a private /tmp
        assert outcome.pop("tmp") == "done" and not Path(f"/tmp/{marker}").exists()
        assert all(v != "done" for v in outcome.values()), outcome
        assert results[0]["reason"] == "exit 1" and "Read-only file system" in results[0]["stderr_tail"]
        assert canary.read_text() == "alive" and sorted(p.name for p in shared.iterdir()) == ["canary.txt"]
        for target in targets[:5]:  # the absolute ones
            assert not Path(target).exists(), target
        assert_next_passes(results)
    finally:
        sandbox._remove_tree(str(shared))


def test_network_is_unreachable():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    abstract = socket.socket(socket.AF_UNIX)  # per network namespace
    abstract.bind(f"\0mentalese-test-{port}")
    abstract.listen(8)
    run_dir = Path("/run") / f"mentalese-test-{port}"  # where daemons keep their sockets: hidden
    unix = socket.socket(socket.AF_UNIX)
    program = ("import socket\nfor host, port in [('1.1.1.1', 53), ('::1', %d)]:\n    try:\n"
               "        socket.create_connection((host, port), timeout=1)\n        print('connected', host)\n"
               "    except OSError as e:\n        print(host, e)\n"
               "for address in ['\\0mentalese-test-%d', '%s/socket']:\n    try:\n"
               "        socket.socket(socket.AF_UNIX).connect(address)\n        print('connected', address)\n"
               "    except OSError as e:\n        print(repr(address), e)\n"
               "socket.create_connection(('127.0.0.1', %d), timeout=1)\n" % (port, port, run_dir, port))
    try:
        if IS_ROOT:
            run_dir.mkdir(mode=0o755)
            unix.bind(str(run_dir / "socket"))
            (run_dir / "socket").chmod(0o777)
            unix.listen(8)
        results = run_bounded([program, PASSING])
        for listener in (server, abstract, unix) if IS_ROOT else (server, abstract):
            listener.setblocking(False)
            with pytest.raises(BlockingIOError):
                listener.accept()  # no connection reached the listener
    finally:
        for listener in (server, abstract, unix):
            listener.close()
        if run_dir.exists():
            sandbox._remove_tree(str(run_dir))
    assert "connected" not in results[0]["stdout_tail"], results[0]["stdout_tail"]
    assert results[0]["reason"] == "exit 1" and "unreachable" in results[0]["stderr_tail"]
    assert_next_passes(results)


def test_secrets_in_the_environment_are_not_inherited(monkeypatch):
    monkeypatch.setenv("MENTALESE_TEST_SECRET", "hunter2-pytest")
    program = (
        "import os\nfound = [k for k in os.environ if 'SECRET' in k]\n"
        f"for pid in set(os.listdir('/proc')) | {{'{os.getpid()}'}}:\n    try:\n"
        "        if b'hunter2' in open(f'/proc/{pid}/environ', 'rb').read():\n            found.append(pid)\n"
        "    except OSError:\n        pass\n"
        "print('FOUND' if found else 'CLEAN', sorted(os.environ))\n")
    results = run_bounded([program, PASSING])
    assert results[0]["passed"], results[0]
    assert results[0]["stdout_tail"].strip() == "CLEAN ['HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR']"
    assert_next_passes(results)


def test_killing_the_parent_fails():
    neighbour = "import time\ntime.sleep(0.8)\nprint('passed')\n"  # runs beside the killer (workers=2)
    killer = ("import os, signal\nrefused = []\n"
              f"for pid in (os.getppid(), {os.getpid()}, -1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
              "    except OSError as e:\n        refused.append((pid, e.strerror))\n"
              "print(refused, flush=True)\nos.killpg(0, signal.SIGKILL)\n")  # its own group: itself
    results = run_bounded([neighbour, killer, PASSING])
    assert results[0]["passed"] and results[0]["stdout_tail"] == "passed\n", results[0]
    assert results[1]["reason"] == "killed by signal 9", results[1]
    assert "(1, 'Operation not permitted')" in results[1]["stdout_tail"]  # the supervisor (its ppid) is root
    assert_next_passes(results)


def test_deep_recursion_crash_is_reported():
    # Python 3.11 calls Python functions without the C stack: recurse through C (getattr) to overflow it
    program = ("import sys\nsys.setrecursionlimit(10 ** 7)\nclass Deep:\n    def __getattr__(self, name):\n"
               "        return getattr(self, name)\nDeep().x\n")
    results = run_bounded([program, PASSING], timeout_s=5.0)
    assert results[0]["reason"] == "crashed" and results[0]["returncode"] == -signal.SIGSEGV, results[0]
    assert_next_passes(results)


SLEEPING_CHILD = ("import subprocess, sys\n"
                  "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\nprint('left a child')\n")
WAITING_ON_CHILD = ("import subprocess, sys\n"
                    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']).wait()\n")
DAEMON = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(30)\n"
          "    os._exit(0)\nos.wait()\nprint('left a daemon')\n")


@pytest.mark.parametrize("weak", [False, True], ids=["namespaces", "without-namespaces"])
def test_children_sleeping_past_the_timeout_are_killed(weak):
    if weak and not IS_ROOT:
        pytest.skip("without namespaces only a root cgroup kills a setsid daemon")
    results = run_bounded([SLEEPING_CHILD, WAITING_ON_CHILD, DAEMON, PASSING], timeout_s=1.0, weak=weak)
    assert results[0]["passed"] and results[0]["duration_s"] < 1.0, results[0]  # not when the child exits
    assert results[1]["reason"] == "timeout" and results[1]["duration_s"] < 2.0, results[1]
    assert results[2]["passed"] and results[2]["stdout_tail"] == "left a daemon\n", results[2]
    assert_next_passes(results)


def test_refuses_a_weak_sandbox_unless_allowed(monkeypatch):
    monkeypatch.setattr(sandbox, "sandbox_support",
                        lambda: {"platform": "darwin", "root": False, "namespaces": False, "strong": False})
    with pytest.raises(MentaleseError, match="refusing to run untrusted code: on darwin .*allow_weak_sandbox"):
        run_program(PASSING)
    with pytest.raises(MentaleseError, match="allow_weak_sandbox"):
        sandbox.run_programs([PASSING])


def test_bad_limits_are_one_line_errors():
    with pytest.raises(MentaleseError, match="SandboxLimits.memory_bytes must be a positive integer"):
        SandboxLimits(memory_bytes=0)
    with pytest.raises(MentaleseError, match="give the wall timeout once"):
        run_program(PASSING, timeout_s=3.0, limits=SandboxLimits(wall_timeout_s=2.0))
    with pytest.raises(MentaleseError, match="needs the program as a str"):
        run_program(b"print(1)")


@pytest.mark.skipif(not IS_ROOT, reason="watching the process tree needs the root cgroup")
def test_the_program_dies_with_the_evaluator():
    dirs = _cgroup_v1_dirs(f"mentalese-test-outer-{uuid.uuid4().hex[:10]}")
    if dirs is None:
        pytest.skip("no cgroup v1 pids+memory")
    base = Path(tempfile.mkdtemp(prefix="mentalese-sandbox-test-"))
    evaluator = ("from mentalese.evaluation.sandbox import run_program\n"
                 "run_program('import time\\ntime.sleep(30)\\n', timeout_s=20)\n")
    try:
        for d in dirs.values():
            d.mkdir()
        (dirs["pids"] / "pids.max").write_text(str(OUTER_PIDS))
        (dirs["memory"] / "memory.limit_in_bytes").write_text(str(OUTER_MEMORY))
        join = " && ".join(f"echo $$ > {d}/cgroup.procs" for d in dirs.values())
        proc = subprocess.Popen(["sh", "-c", join + ' && exec "$@"', "sh", "timeout", "-s", "KILL", "20",
                                 sys.executable, "-c", evaluator], env={**os.environ, "TMPDIR": str(base)})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                b"/tmp/program.py" in Path(f"/proc/{p}/cmdline").read_bytes() for p in _procs_below(dirs["pids"])):
            time.sleep(0.05)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        os.kill(int(children[0]), signal.SIGKILL)  # the evaluator (timeout's child), with no chance to clean up
        proc.wait(timeout=5)
        deadline = time.monotonic() + 2
        while _procs_below(dirs["pids"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _procs_below(dirs["pids"]), "the sandboxed program outlived its evaluator"
    finally:
        for d in dirs.values():
            if d.exists():
                _kill_and_remove(d)
        sandbox._remove_tree(str(base))
