"""Benchmark registry: every benchmark is a declarative `BenchmarkSpec`.

A spec says where the data lives (local file per split, with the hub dataset as the other source),
how a raw row becomes an `Example`, how prompts look, how answers are extracted and graded, and a
version that must be bumped whenever anything that changes scores (parsing, prompt, extraction,
grader) changes.

Data directory: the `data_dir` argument, else the `MENTALESE_DATA_DIR` environment variable,
else `./data`. Source "auto" reads the local file when it exists and otherwise calls
`datasets.load_dataset(hub_id)`; "local" and "hub" force one of them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from mentalese.errors import MentaleseError
from mentalese.tasks.example import Example

RowParser = Callable[[Any, str], Example]  # (raw row, row id) -> Example; raise MentaleseError on bad rows


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    version: int
    description: str
    parse_row: RowParser | None = None  # for local rows (dict for json/jsonl, str for txt lines)
    local_files: Mapping[str, str] = field(default_factory=dict)  # split -> path relative to data dir
    hub_id: str | None = None
    hub_config: str | None = None
    hub_splits: Mapping[str, str] = field(default_factory=dict)  # our split -> hub split
    parse_hub_row: RowParser | None = None  # defaults to parse_row
    generator: Callable[..., list[Example]] | None = None  # synthetic benchmarks: generator(split, **kwargs)
    prompt: str = "{question}\n"  # evaluation prompt template; methods that train their own format override it
    extraction: str = "answer_is"  # strict extractor: "answer_is" | "boxed" | "hash" | "text"
    grader: str = "numeric"  # "numeric" | "math_verify" | "math_hendrycks" | "exact" (evaluation.grading.GRADERS)
    metric: str = "accuracy"
    default_split: str = "test"
    notes: str = ""

    @property
    def splits(self) -> list[str]:
        keys = list(self.local_files) + [s for s in self.hub_splits if s not in self.local_files]
        return keys or (["train", "valid", "test"] if self.generator else [])


_REGISTRY: dict[str, BenchmarkSpec] = {}


def render_prompt(template: str, question: str) -> str:
    """Fill `{question}`; other braces (e.g. \\boxed{}) are left alone, unlike str.format."""
    if "{question}" not in template:
        raise MentaleseError(f"prompt template {template!r} has no {{question}} placeholder")
    return template.replace("{question}", question)


def register(spec: BenchmarkSpec) -> BenchmarkSpec:
    if spec.name in _REGISTRY:
        raise MentaleseError(f"benchmark {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_builtin() -> None:
    # Importing these modules registers their specs (once).
    import mentalese.tasks.benchmarks  # noqa: F401
    import mentalese.tasks.code_benchmarks  # noqa: F401
    import mentalese.tasks.synthetic  # noqa: F401


def list_benchmarks() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_benchmark(name: str) -> BenchmarkSpec:
    _ensure_builtin()
    if name not in _REGISTRY:
        raise MentaleseError(f"unknown benchmark {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    return Path(data_dir or os.environ.get("MENTALESE_DATA_DIR") or "data")


def read_rows(path: Path) -> Iterator[Any]:
    """Raw rows of a local file: dicts for .jsonl/.json, stripped non-empty lines for .txt."""
    if path.suffix == ".json":
        try:
            data = json.loads(_decode(path.read_bytes(), path))
        except json.JSONDecodeError as e:
            raise MentaleseError(f"{path}: malformed JSON ({e.msg} at line {e.lineno})") from None
        if isinstance(data, dict) and "examples" in data:  # BIG-bench task.json
            data = data["examples"]
        if not isinstance(data, list):
            raise MentaleseError(f"{path}: expected a JSON list of rows")
        yield from data
        return
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            line = _decode(raw, path, n)
            if not line.strip():
                continue
            if path.suffix != ".jsonl":
                yield line.rstrip("\r\n")
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise MentaleseError(f"{path}:{n}: malformed JSON line ({e.msg})") from None


def _decode(raw: bytes, path: Path, line: int | None = None) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        where = f"{path}:{line}" if line else str(path)
        raise MentaleseError(f"{where}: not UTF-8 text (bad byte 0x{raw[e.start]:02x} at offset {e.start})") from None


def load_benchmark(
    name: str,
    split: str | None = None,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    limit: int | None = None,
    **generator_kwargs: Any,
) -> list[Example]:
    """Load a registered benchmark split as a list of `Example`s."""
    spec = get_benchmark(name)
    split = split or spec.default_split
    if spec.generator is not None:
        examples = spec.generator(split, **generator_kwargs)
    else:
        if generator_kwargs:
            raise MentaleseError(f"benchmark {name!r} takes no options, got {sorted(generator_kwargs)}")
        examples = _load_from_source(spec, split, resolve_data_dir(data_dir), source)
    if limit is not None:
        examples = examples[:limit]
    if not examples:
        raise MentaleseError(f"benchmark {name!r} split {split!r} is empty")
    return examples


def _load_from_source(spec: BenchmarkSpec, split: str, data_dir: Path, source: str) -> list[Example]:
    if source not in ("auto", "local", "hub"):
        raise MentaleseError(f"source must be auto, local or hub, got {source!r}")
    if split not in spec.splits:
        raise MentaleseError(f"benchmark {spec.name!r} has no split {split!r}; splits: {spec.splits}")
    rel = spec.local_files.get(split)
    path = data_dir / rel if rel else None
    if source in ("auto", "local") and path is not None and path.exists():
        if spec.parse_row is None:
            raise MentaleseError(f"benchmark {spec.name!r} has no parser for local files")
        return [spec.parse_row(row, f"{split}-{i}") for i, row in enumerate(read_rows(path))]
    if source == "local" or spec.hub_id is None or split not in spec.hub_splits:
        where = f"{path}" if path else "no local file is declared"
        raise MentaleseError(
            f"benchmark {spec.name!r} split {split!r}: local file not found ({where}); "
            f"set --data-dir or MENTALESE_DATA_DIR" + ("" if spec.hub_id else "; it has no hub source")
        )
    import datasets  # imported lazily: slow

    ds = datasets.load_dataset(spec.hub_id, spec.hub_config, split=spec.hub_splits[split])
    parse = spec.parse_hub_row or spec.parse_row
    if parse is None:
        raise MentaleseError(f"benchmark {spec.name!r} has no parser for hub rows")
    return [parse(row, f"{split}-{i}") for i, row in enumerate(ds)]
