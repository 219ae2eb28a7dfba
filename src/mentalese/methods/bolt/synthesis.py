"""Teacher synthesis of latent thoughts (BoLT's warm start).

A teacher writes, for every chunk, the thoughts an expert would have had while writing it, given
the preceding raw text (`prefix_chunks` chunks, paper: 1). Teachers:

- `OpenAITeacher`: any OpenAI-compatible /v1/chat/completions endpoint (vLLM, hosted APIs), called
  with a thread pool; timeouts, connection errors, 429/5xx and garbage bodies are retried with
  exponential backoff, then counted as skips; other 4xx answers (bad key, unknown model) stop with
  a MentaleseError because retrying cannot fix them.
- `HFTeacher`: a local transformers model through the library's decode loop.
- `FunctionTeacher`: a Python function (tests and the toy's exact derivation teacher).

`synthesize_thoughts` consults an on-disk cache keyed by (teacher name, prompt) before calling the
teacher, so a rerun pays for nothing twice; failures are not cached and are retried next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from mentalese.errors import MentaleseError
from mentalese.atomic_files import write_text_atomic
from mentalese.methods.bolt.data_format import Chunk

log = logging.getLogger(__name__)

TEACHER_PROMPT = (
    "You are an expert reading a document. Below is the text that came before, then the next passage.\n"
    "Write the latent thoughts an expert would have had while writing the next passage: the background\n"
    "knowledge it relies on, the reasoning steps it skips, and checks of its claims. Write only the thoughts.\n\n"
    "## Previous text\n{prefix}\n\n## Next passage\n{chunk}\n\n## Latent thoughts\n"
)


@dataclass
class TeacherConfig:
    kind: str = field(default="openai", metadata={"help": "openai (HTTP endpoint) | hf (local model) | function "
                                                               "(the toy's exact derivation teacher)"})
    model: str = field(default="gpt-4o-mini", metadata={"help": "endpoint model name or local model path (paper: gpt-4o-mini)"})
    base_url: str = field(default="http://127.0.0.1:8000/v1", metadata={"help": "OpenAI-compatible base URL"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "environment variable holding the key"})
    prompt: str = field(default=TEACHER_PROMPT, metadata={"help": "template with {prefix} and {chunk}"})
    prefix_chunks: int = field(default=1, metadata={"help": "previous raw chunks shown to the teacher (paper: 1)"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature (paper: 0.7)"})
    max_tokens: int = field(default=1024, metadata={"help": "thought length cap"})
    concurrency: int = field(default=16, metadata={"help": "parallel HTTP requests"})
    retries: int = field(default=3, metadata={"help": "retries per request after the first try"})
    backoff_s: float = field(default=1.0, metadata={"help": "first retry delay; doubles each retry"})
    timeout_s: float = field(default=60.0, metadata={"help": "per-request timeout"})
    batch_size: int = field(default=16, metadata={"help": "local teacher: rows per decode batch"})

    def __post_init__(self) -> None:
        if self.kind not in ("openai", "hf", "function"):
            raise MentaleseError(f"teacher.kind must be openai, hf or function (the toy's derivation teacher), "
                                 f"got {self.kind!r}")
        if "{chunk}" not in self.prompt:
            raise MentaleseError("teacher.prompt must contain {chunk}")
        if self.concurrency < 1 or self.retries < 0 or self.prefix_chunks < 0:
            raise MentaleseError("teacher.concurrency must be >= 1, retries and prefix_chunks >= 0")


class Teacher:
    name: str

    def complete(self, prompts: Sequence[str]) -> list[str | None]:
        """One thought per prompt; None where the teacher failed (the caller counts it)."""
        raise NotImplementedError


class FunctionTeacher(Teacher):
    def __init__(self, fn: Callable[[str], str | None], name: str = "function"):
        self.fn, self.name = fn, name

    def complete(self, prompts: Sequence[str]) -> list[str | None]:
        return [self.fn(p) for p in prompts]


class TeacherRequestError(Exception):
    """A failure worth retrying (timeout, connection, 429/5xx, garbage body)."""


class OpenAITeacher(Teacher):
    def __init__(self, cfg: TeacherConfig, sleep: Callable[[float], None] = time.sleep):
        self.cfg, self.sleep = cfg, sleep
        self.name = f"openai:{cfg.base_url}:{cfg.model}:t{cfg.temperature}"
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"

    def _request(self, prompt: str) -> str:
        body = json.dumps({"model": self.cfg.model, "messages": [{"role": "user", "content": prompt}],
                           "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.cfg.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            if e.code == 429 or e.code >= 500:
                raise TeacherRequestError(f"HTTP {e.code}") from None
            raise MentaleseError(f"teacher endpoint {self.url} answered HTTP {e.code}: "
                                 f"{e.read()[:200].decode(errors='replace')}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            raise TeacherRequestError(f"{type(e).__name__}: {e}") from None
        try:
            text = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise TeacherRequestError(f"garbage response: {raw[:80]!r}") from None
        if not isinstance(text, str) or not text.strip():
            raise TeacherRequestError("empty completion")
        return text.strip()

    def _with_retries(self, prompt: str) -> str | None:
        for attempt in range(self.cfg.retries + 1):
            try:
                return self._request(prompt)
            except TeacherRequestError as e:
                if attempt == self.cfg.retries:
                    log.warning("teacher gave up after %d tries: %s", attempt + 1, e)
                    return None
                self.sleep(self.cfg.backoff_s * 2 ** attempt)
        return None

    def complete(self, prompts: Sequence[str]) -> list[str | None]:
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            return list(pool.map(self._with_retries, prompts))


class HFTeacher(Teacher):
    def __init__(self, cfg: TeacherConfig, model=None, tokenizer=None):
        from mentalese.models.loading import load_model_and_tokenizer

        if model is None:
            model, tokenizer = load_model_and_tokenizer(cfg.model)
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.name = f"hf:{cfg.model}:t{cfg.temperature}"

    def complete(self, prompts: Sequence[str]) -> list[str | None]:
        from mentalese.decoding.loop import DecodeConfig, decode

        dcfg = DecodeConfig(do_sample=self.cfg.temperature > 0, temperature=self.cfg.temperature,
                            max_new_tokens=self.cfg.max_tokens, batch_size=self.cfg.batch_size)
        out = []
        for r in decode(self.model, self.tokenizer, list(prompts), dcfg):
            ok = r.error is None and r.text.strip()
            out.append(r.text.strip() if ok else None)
        return out


def make_teacher(cfg: TeacherConfig) -> Teacher:
    if cfg.kind == "openai":
        return OpenAITeacher(cfg)
    if cfg.kind == "hf":
        return HFTeacher(cfg)
    raise MentaleseError("teacher.kind 'function' is only available from Python (FunctionTeacher)")


def teacher_prompt(cfg: TeacherConfig, doc: Sequence[Chunk], index: int) -> str:
    prefix = "".join(c.text for c in doc[max(0, index - cfg.prefix_chunks):index])
    return cfg.prompt.replace("{prefix}", prefix or "(start of document)").replace("{chunk}", doc[index].text)


class ThoughtCache:
    """One small JSON file per (teacher, prompt), written atomically; safe to share between runs."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, teacher: str, prompt: str) -> Path:
        key = hashlib.sha256(f"{teacher}\x00{prompt}".encode()).hexdigest()
        return self.dir / key[:2] / f"{key}.json"

    def get(self, teacher: str, prompt: str) -> str | None:
        p = self._path(teacher, prompt)
        return json.loads(p.read_text())["thought"] if p.exists() else None

    def put(self, teacher: str, prompt: str, thought: str) -> None:
        write_text_atomic(self._path(teacher, prompt), json.dumps({"thought": thought}))


def synthesize_thoughts(documents: Sequence[Sequence[Chunk]], teacher: Teacher, cfg: TeacherConfig,
                        cache: ThoughtCache | None = None) -> tuple[dict[str, str], dict[str, int]]:
    """Thoughts for every chunk: chunk_id -> text, plus counts (cached, requested, failed)."""
    jobs = [(c.chunk_id, teacher_prompt(cfg, doc, c.index)) for doc in documents for c in doc]
    thoughts, todo = {}, []
    for cid, prompt in jobs:
        hit = cache.get(teacher.name, prompt) if cache else None
        if hit is not None:
            thoughts[cid] = hit
        else:
            todo.append((cid, prompt))
    answers = teacher.complete([p for _, p in todo]) if todo else []
    failed = 0
    for (cid, prompt), thought in zip(todo, answers, strict=True):
        if thought is None:
            failed += 1
            continue
        thoughts[cid] = thought
        if cache:
            cache.put(teacher.name, prompt, thought)
    stats = {"chunks": len(jobs), "cached": len(jobs) - len(todo), "requested": len(todo), "failed": failed}
    if failed:
        log.warning("teacher failed on %d of %d chunks; they stay raw (rerun to retry them)", failed, len(todo))
    return thoughts, stats
