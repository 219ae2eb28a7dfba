"""Run model-written Python programs in a separate, bounded process (the code benchmarks' executor).

    result = run_program(candidate + "\n" + tests + "\ncheck(f)\n", timeout_s=5.0)
    result.passed, result.reason        # True, "ok" / False, "timeout" | "memory" | "exit 1" | ...
    results = run_programs(programs, workers=2)   # same order; one failure never stops the others

Each program runs in a fresh `python -I -S -B` (stdlib only) started by sandbox_launcher.py, which on Linux
puts it in new network/pid/mount/IPC namespaces (a user namespace too when not root), makes every mount
read-only, gives it a private size-capped tmpfs on /tmp as its working directory, sets the rlimits, and
when root drops it to nobody inside a fresh pids+memory cgroup. The parent enforces the wall clock, caps
the captured output, and afterwards kills the process group and the cgroup and removes the cgroup and the temp dir.
What holds where, and what is not protected: docs/sandbox.md. Nothing here ever execs or evals in this
process. Without namespaces (macOS, Windows, Linux that forbids them) run_program refuses unless
`allow_weak_sandbox=True`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mentalese.errors import MentaleseError
from mentalese.evaluation.sandbox_cgroups import SandboxCgroup

LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")
NOBODY_UID = NOBODY_GID = 65534
TAIL_CHARS = 4000
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
PRIVATE_TMP = "/tmp"  # with namespaces: the program's working directory, a fresh tmpfs over the host's /tmp
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}
DRAIN_S = 0.5  # after the program ended: how long to wait for the pipes to close
POLL_S = 0.02  # how often the parent checks whether the launcher has exited


@dataclass(frozen=True)
class SandboxLimits:
    """Per-program limits. Memory is enforced per process (RLIMIT_AS) and, with a cgroup, for the whole tree."""

    cpu_seconds: float | None = None  # RLIMIT_CPU of each process; None: ceil(wall timeout) + 1
    memory_bytes: int = 1 << 30  # RLIMIT_AS of each process; the memory cgroup caps the tree at this + workdir
    file_size_bytes: int = 16 << 20  # RLIMIT_FSIZE: the largest file the program may write
    workdir_bytes: int = 64 << 20  # size of the tmpfs working directory (with namespaces)
    max_processes: int = 32  # processes+threads: the pids cgroup, and RLIMIT_NPROC above the uid's current count
    open_files: int = 256  # RLIMIT_NOFILE
    output_bytes: int = 1 << 20  # per stream (stdout, stderr); beyond it the program is killed: "output-limit"
    wall_timeout_s: float | None = None  # None: run_program's timeout_s

    def __post_init__(self):
        for name in ("memory_bytes", "file_size_bytes", "workdir_bytes", "max_processes", "open_files",
                     "output_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise MentaleseError(f"SandboxLimits.{name} must be a positive integer, got {value!r}")
        for name in ("cpu_seconds", "wall_timeout_s"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise MentaleseError(f"SandboxLimits.{name} must be a positive number or None, got {value!r}")


@dataclass(frozen=True)
class SandboxResult:
    passed: bool  # exit 0 within the limits
    reason: str  # "ok" | "timeout" | "memory" | "output-limit" | "crashed" | "exit <code>" |
    #              "killed by signal N" | "error: ..."
    returncode: int | None  # the exit code, or -signal; None when the program never ran or never ended
    stdout_tail: str
    stderr_tail: str
    duration_s: float


@functools.lru_cache(maxsize=None)
def sandbox_support() -> dict:
    """What this machine allows: {"platform", "root", "namespaces", "strong"}; probed once per process."""
    if not sys.platform.startswith("linux"):
        return {"platform": sys.platform, "root": False, "namespaces": False, "strong": False}
    out = subprocess.run([sys.executable, "-I", "-S", "-B", str(LAUNCHER), "--probe"], capture_output=True,
                         text=True, timeout=30, env={"PATH": SYSTEM_PATH})
    found = json.loads(out.stdout) if out.returncode == 0 else {"namespaces": False, "root": os.geteuid() == 0}
    return {"platform": sys.platform, **found, "strong": found["namespaces"]}


def _weak_sandbox_error(support: dict) -> str:
    if not support["platform"].startswith("linux"):
        why = (f"on {support['platform']} there are no namespaces (no network, filesystem or process isolation"
               f"{'; no rlimits either' if support['platform'] == 'win32' else ''})")
    else:
        why = "this Linux refuses new namespaces (no network, filesystem or pid isolation)"
    return f"refusing to run untrusted code: {why}; pass allow_weak_sandbox=True to run it anyway"


def _traversable_by_others(path: str) -> bool:
    """Every directory above `path`, and `path` itself, searchable/executable by others."""
    path = os.path.realpath(path)
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in (*Path(path).parents, path))


@functools.lru_cache(maxsize=None)
def program_python(drop_to_nobody: bool) -> str:
    """The interpreter for programs: ours, unless the unprivileged uid cannot reach it (e.g. under /root)."""
    ours = os.path.realpath(getattr(sys, "_base_executable", sys.executable) or sys.executable)
    if not drop_to_nobody:
        return ours
    if _traversable_by_others(ours) and _traversable_by_others(os.path.join(sys.base_prefix, "lib")):
        return ours
    system = shutil.which("python3", path=SYSTEM_PATH)
    if system and _traversable_by_others(system):
        return os.path.realpath(system)
    raise MentaleseError(f"no Python interpreter that uid {NOBODY_UID} can run: {ours} is not reachable and "
                         f"there is no python3 on {SYSTEM_PATH}")


def _count_threads_of(uid: int) -> int:
    """Threads whose real uid is `uid` (what RLIMIT_NPROC counts), from /proc."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{entry}/status").read_text().splitlines())
        except (OSError, ValueError):
            continue
        if int(fields.get("Uid", "-1 0").split()[0]) == uid:
            total += int(fields.get("Threads", "1"))
    return total


def _tail(data: bytearray) -> str:
    return bytes(data[-4 * TAIL_CHARS:]).decode("utf-8", errors="replace")[-TAIL_CHARS:]


def _remove_tree(path: str) -> None:
    def make_writable_and_retry(func, failed, _exc):
        os.chmod(os.path.dirname(failed), 0o700)
        func(failed)

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=make_writable_and_retry)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reason(code: int, memory_hit: bool, stderr: bytearray) -> tuple[bool, str]:
    """(passed, reason) from an exit code (negative: the signal that killed the program)."""
    if code == 0:
        return True, "ok"
    last_line = (_tail(stderr).strip().splitlines() or [""])[-1]
    if memory_hit or (code > 0 and last_line.startswith("MemoryError")):
        return False, "memory"
    if code > 0:
        return False, f"exit {code}"
    if -code == signal.SIGXCPU:
        return False, "timeout"  # the CPU-seconds limit
    if -code in CRASH_SIGNALS:
        return False, "crashed"
    return False, f"killed by signal {-code}"


def _launch_config(limits: SandboxLimits, wall_s: float, workdir: str, status_fd: int, strong: bool,
                   cgroup: SandboxCgroup | None) -> dict:
    root = os.geteuid() == 0 and sys.platform.startswith("linux")
    uid, gid = (NOBODY_UID, NOBODY_GID) if root else (os.getuid(), os.getgid())
    cpu = limits.cpu_seconds if limits.cpu_seconds is not None else math.ceil(wall_s) + 1
    nproc = _count_threads_of(uid) + limits.max_processes
    program_dir = PRIVATE_TMP if strong else workdir
    return {
        "status_fd": status_fd, "parent_pid": os.getpid(), "workdir": workdir, "program_dir": program_dir,
        "namespaces": strong, "uid": uid, "gid": gid,
        "workdir_bytes": limits.workdir_bytes, "python": program_python(root),
        "cgroup_procs": cgroup.procs_files if cgroup else [],
        "rlimits": {"cpu": [math.ceil(cpu), math.ceil(cpu) + 1], "as": limits.memory_bytes,
                    "fsize": limits.file_size_bytes, "nproc": nproc, "nofile": limits.open_files, "core": 0},
        "env": {"PATH": SYSTEM_PATH, "HOME": program_dir, "TMPDIR": program_dir, "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8"},
    }


def run_program(program: str, timeout_s: float = 10.0, limits: SandboxLimits | None = None, *,
                allow_weak_sandbox: bool = False) -> SandboxResult:
    """Run complete Python source `program` in the sandbox; the result says whether it passed and why not."""
    if not isinstance(program, str):
        raise MentaleseError(f"run_program needs the program as a str, got {type(program).__name__}")
    limits = limits or SandboxLimits()
    if limits.wall_timeout_s is not None and timeout_s not in (10.0, limits.wall_timeout_s):
        raise MentaleseError(f"give the wall timeout once: timeout_s={timeout_s} but "
                             f"SandboxLimits.wall_timeout_s={limits.wall_timeout_s}")
    wall_s = limits.wall_timeout_s if limits.wall_timeout_s is not None else timeout_s
    if not (isinstance(wall_s, (int, float)) and wall_s > 0):
        raise MentaleseError(f"timeout_s must be a positive number, got {wall_s!r}")
    support = sandbox_support()
    if not support["strong"] and not allow_weak_sandbox:
        raise MentaleseError(_weak_sandbox_error(support))
    if not support["platform"].startswith("linux"):
        return _run_unconfined(program, wall_s, limits)
    return _run_linux(program, wall_s, limits, strong=support["strong"])


def _run_linux(program: str, wall_s: float, limits: SandboxLimits, strong: bool) -> SandboxResult:
    start = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="mentalese-sandbox-")
    cgroup = SandboxCgroup.create(limits) if os.geteuid() == 0 else None
    status_r, status_w = os.pipe()
    proc = None
    try:
        Path(workdir, "program.py").write_text(program, encoding="utf-8")
        os.chmod(Path(workdir, "program.py"), 0o644)
        if os.geteuid() == 0 and not strong:  # without namespaces this is the working directory
            os.chown(workdir, NOBODY_UID, NOBODY_GID)
            if not _traversable_by_others(os.path.dirname(workdir)):
                raise MentaleseError(f"uid {NOBODY_UID} cannot reach the temp dir {os.path.dirname(workdir)} "
                                     "(set TMPDIR to a world-searchable directory)")
        config = _launch_config(limits, wall_s, workdir, status_w, strong, cgroup)
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", str(LAUNCHER), json.dumps(config)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=(status_w,), start_new_session=True, cwd=workdir,
                                env={"PATH": SYSTEM_PATH})
        os.close(status_w)
        status_w = -1
        capture = _Capture(proc, limits.output_bytes)
        stopped = capture.pump(start + wall_s, proc)
        if stopped is None and proc.poll() is None:  # both pipes closed, the launcher still running
            try:
                proc.wait(timeout=max(start + wall_s - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                pass
        if stopped is None and proc.poll() is None:
            stopped = "timeout"
        _kill_group(proc.pid)  # the launcher's group: all of it when stopped, leftovers otherwise
        if cgroup:
            cgroup.kill_all()
        proc.wait()
        stopped = capture.pump(time.monotonic() + DRAIN_S) or stopped  # what was still in the pipes
        capture.close()
        out, err = capture.out, capture.err
        status = _read_status(status_r)
        code = None
        if stopped:
            passed, reason = False, stopped
        elif status.startswith("error "):
            passed, reason = False, "error: " + status[len("error "):]
        elif status.startswith("exit "):
            code = os.waitstatus_to_exitcode(int(status.split()[1]))
            passed, reason = _reason(code, bool(cgroup and cgroup.oom_kills() > 0), err)
        else:
            passed, reason = False, f"error: the sandbox launcher exited {proc.returncode} without a status"
        return SandboxResult(passed, reason, code, _tail(out), _tail(err), time.monotonic() - start)
    finally:
        if proc is not None:
            if proc.poll() is None:
                _kill_group(proc.pid)
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        if cgroup:
            cgroup.kill_all()
            cgroup.remove()
        for fd in (status_r, status_w):
            if fd >= 0:
                os.close(fd)
        _remove_tree(workdir)


def _read_status(fd: int) -> str:
    """The status line the supervisor wrote ("exit <wait status>" or "error <text>"; an error wins)."""
    os.set_blocking(fd, False)
    try:
        lines = os.read(fd, 1 << 16).decode(errors="replace").splitlines()
    except BlockingIOError:  # nothing written (the launcher was killed)
        return ""
    return next((line for line in lines if line.startswith("error ")), lines[0] if lines else "")


class _Capture:
    """Reads a process's stdout and stderr pipes without blocking, keeping at most `cap` bytes of each."""

    def __init__(self, proc: subprocess.Popen, cap: int):
        self.cap = cap
        self.buffers = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
        self.out, self.err = self.buffers.values()
        self.selector = selectors.DefaultSelector()
        for fd in self.buffers:
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ)

    def pump(self, until: float, proc: subprocess.Popen | None = None) -> str | None:
        """Read until `until`, until both pipes are closed, or (given `proc`) until it has exited.

        Returns "output-limit" when a stream passed the cap, else None. It never waits for the pipes to
        close after `proc` exited: a grandchild holding them open cannot delay the result.
        """
        while self.selector.get_map():
            now = time.monotonic()
            if now >= until or (proc is not None and proc.poll() is not None):
                return None
            for key, _ in self.selector.select(timeout=min(until - now, POLL_S)):
                chunk = os.read(key.fd, 1 << 16)
                buffer = self.buffers[key.fd]
                if not chunk:
                    self.selector.unregister(key.fd)
                elif len(buffer) + len(chunk) > self.cap:
                    buffer += chunk[: self.cap - len(buffer)]
                    return "output-limit"
                else:
                    buffer += chunk
        return None

    def close(self) -> None:
        self.selector.close()


def _run_unconfined(program: str, wall_s: float, limits: SandboxLimits) -> SandboxResult:
    """macOS / Windows with allow_weak_sandbox=True: a separate interpreter in a temp dir, the wall clock, the
    output cap, the rlimits where the OS takes them. No network, filesystem, user or process isolation."""
    start = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="mentalese-sandbox-")
    proc = None
    try:
        Path(workdir, "program.py").write_text(program, encoding="utf-8")
        env = {"PATH": os.defpath, "HOME": workdir, "TMPDIR": workdir, "TEMP": workdir, "TMP": workdir}
        if os.name == "posix":
            kwargs = {"start_new_session": True, "preexec_fn": functools.partial(_posix_rlimits, limits, wall_s)}
        else:
            env["SYSTEMROOT"] = os.environ.get("SYSTEMROOT", r"C:\Windows")  # Python cannot start without it
            kwargs = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", "program.py"], cwd=workdir, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
        over = threading.Event()
        buffers = (bytearray(), bytearray())
        readers = [threading.Thread(target=_read_capped, args=(stream, buffer, limits.output_bytes, over),
                                    daemon=True) for stream, buffer in zip((proc.stdout, proc.stderr), buffers)]
        for reader in readers:
            reader.start()
        stopped = None
        while proc.poll() is None and stopped is None:
            if over.is_set():
                stopped = "output-limit"
            elif time.monotonic() > start + wall_s:
                stopped = "timeout"
            else:
                time.sleep(POLL_S)
        if proc.poll() is None:
            _kill_group(proc.pid) if os.name == "posix" else proc.kill()
        proc.wait()
        for reader in readers:
            reader.join(timeout=DRAIN_S)  # a surviving grandchild may hold the pipes: do not wait for it
        stopped = stopped or ("output-limit" if over.is_set() else None)
        passed, reason = (False, stopped) if stopped else _reason(proc.returncode, False, buffers[1])
        return SandboxResult(passed, reason, proc.returncode, _tail(buffers[0]), _tail(buffers[1]),
                             time.monotonic() - start)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        _remove_tree(workdir)


def _read_capped(stream, buffer: bytearray, cap: int, over: threading.Event) -> None:
    """Keep the first `cap` bytes; read and drop the rest (so the writer never blocks), flag `over`."""
    while chunk := stream.read1(1 << 16):
        room = cap - len(buffer)
        if len(chunk) > room:
            over.set()
        buffer += chunk[:max(room, 0)]


def _posix_rlimits(limits: SandboxLimits, wall_s: float) -> None:
    import resource

    cpu = math.ceil(limits.cpu_seconds if limits.cpu_seconds is not None else math.ceil(wall_s) + 1)
    for which, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, limits.file_size_bytes),
                         (resource.RLIMIT_CORE, 0), (resource.RLIMIT_AS, limits.memory_bytes)):
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass  # macOS refuses some (RLIMIT_AS): documented as not guaranteed there


def run_programs(programs: Sequence[str], workers: int = 2, timeout_s: float = 10.0,
                 limits: SandboxLimits | None = None, *, allow_weak_sandbox: bool = False) -> list[SandboxResult]:
    """run_program over `programs` with at most `workers` at a time; results in the same order.

    A program that fails, or a sandbox error while running one, becomes that program's result
    (reason "error: ..."); the others still run. A refusal (weak sandbox) is raised before any runs.
    """
    if not isinstance(workers, int) or workers < 1:
        raise MentaleseError(f"workers must be a positive integer, got {workers!r}")
    support = sandbox_support()
    if not support["strong"] and not allow_weak_sandbox:
        raise MentaleseError(_weak_sandbox_error(support))

    def one(program: str) -> SandboxResult:
        try:
            return run_program(program, timeout_s, limits, allow_weak_sandbox=allow_weak_sandbox)
        except Exception as e:  # noqa: BLE001 - one program's failure must not stop the batch
            return SandboxResult(False, f"error: {type(e).__name__}: {e}", None, "", "", 0.0)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, programs))
