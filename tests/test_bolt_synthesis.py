"""Teacher synthesis: a fake OpenAI-compatible server on loopback (timeouts, garbage, errors), a tiny local model."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mentalese.errors import MentaleseError
from mentalese.methods.bolt.data_format import chunk_document
from mentalese.methods.bolt.synthesis import (
    FunctionTeacher, HFTeacher, OpenAITeacher, TeacherConfig, ThoughtCache, synthesize_thoughts, teacher_prompt,
)

DOCS = [chunk_document(f"d{i}", f"First {i}. Second {i}. Third {i}.", mean=0, cap=1) for i in range(3)]


class FakeEndpoint:
    """Answers /v1/chat/completions; `behaviour(prompt, attempt)` picks ok | slow | garbage | 500 | 401."""

    def __init__(self, behaviour):
        self.behaviour, self.calls, self.lock = behaviour, {}, threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][0]["content"]
                with outer.lock:
                    outer.calls[prompt] = outer.calls.get(prompt, 0) + 1
                    attempt = outer.calls[prompt]
                kind = outer.behaviour(prompt, attempt)
                if kind == "slow":
                    time.sleep(0.5)
                if kind in ("500", "401"):
                    self.send_response(int(kind))
                    self.end_headers()
                    self.wfile.write(b"nope")
                    return
                payload = b"<html>garbage" if kind == "garbage" else json.dumps(
                    {"choices": [{"message": {"content": f"thought about {prompt[-12:]!r}"}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def cfg_for(url, **kw):
    return TeacherConfig(**{"kind": "openai", "model": "fake", "base_url": url, "timeout_s": 0.2, "backoff_s": 0.01,
                            "retries": 2, "concurrency": 4, **kw})


def test_prompt_has_previous_chunk():
    cfg = TeacherConfig()
    assert "(start of document)" in teacher_prompt(cfg, DOCS[0], 0)
    p = teacher_prompt(cfg, DOCS[0], 2)
    assert "Second 0. " in p and p.rstrip().endswith("## Latent thoughts") and "Third 0." in p and "First 0." not in p


def test_endpoint_retries_skips_and_cache(tmp_path):
    # first try of every prompt is slow (timeout) or garbage, the retry succeeds; "Third 2" always fails
    def behaviour(prompt, attempt):
        if "Third 2." in prompt.split("## Next passage")[1]:
            return "500"
        return ("slow" if "First" in prompt else "garbage") if attempt == 1 else "ok"

    cache = ThoughtCache(tmp_path / "cache")
    with FakeEndpoint(behaviour) as ep:
        cfg = cfg_for(ep.url)
        thoughts, stats = synthesize_thoughts(DOCS, OpenAITeacher(cfg), cfg, cache)
        assert stats == {"chunks": 9, "cached": 0, "requested": 9, "failed": 1}
        assert "d2#2" not in thoughts and len(thoughts) == 8 and thoughts["d0#0"].startswith("thought about")
        calls_before = sum(ep.calls.values())
        assert calls_before == 8 * 2 + 3  # one failure + one retry each; 3 tries for the 500s
        again, stats2 = synthesize_thoughts(DOCS, OpenAITeacher(cfg), cfg, cache)
        assert stats2 == {"chunks": 9, "cached": 8, "requested": 1, "failed": 1}
        assert again == thoughts and sum(ep.calls.values()) == calls_before + 3  # only the failed chunk is re-asked


def test_bad_key_is_a_clear_error():
    with FakeEndpoint(lambda p, a: "401") as ep:
        cfg = cfg_for(ep.url)
        with pytest.raises(MentaleseError, match="HTTP 401"):
            synthesize_thoughts(DOCS[:1], OpenAITeacher(cfg), cfg)


def test_unreachable_endpoint_is_counted():
    cfg = cfg_for("http://127.0.0.1:9/v1", retries=1)
    thoughts, stats = synthesize_thoughts(DOCS[:1], OpenAITeacher(cfg, sleep=lambda s: None), cfg)
    assert thoughts == {} and stats["failed"] == 3


def test_function_and_local_model_teachers(tmp_path):
    from mentalese.models.loading import load_model_and_tokenizer
    from mentalese.models.tiny import build_tiny_model, char_tokenizer

    cfg = TeacherConfig(kind="hf", prompt="{prefix}|{chunk}|", temperature=0.7, max_tokens=6, batch_size=4)
    thoughts, _ = synthesize_thoughts(DOCS[:1], FunctionTeacher(lambda p: p.split("|")[1].upper()), cfg)
    assert thoughts == {"d0#0": "FIRST 0. ", "d0#1": "SECOND 0. ", "d0#2": "THIRD 0."}
    model, tok = load_model_and_tokenizer(build_tiny_model("gpt2", char_tokenizer(), tmp_path), dtype="float32",
                                          device="cpu")
    thoughts, stats = synthesize_thoughts(DOCS[:1], HFTeacher(cfg, model, tok), cfg, ThoughtCache(tmp_path / "c"))
    assert stats["requested"] == 3 and len(thoughts) + stats["failed"] == 3
    assert all(0 < len(t) <= 6 for t in thoughts.values())
