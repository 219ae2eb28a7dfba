"""lm-evaluation-harness backend: lm-eval's tasks, decoded by mentalese's loop with any strategy.

    mentalese-lm-eval --model mentalese --model_args pretrained=runs/cot/model,strategy=gumbel --tasks gsm8k
    # Python: importing this module registers the name "mentalese"
    import lm_eval, mentalese.lm_eval_backend
    lm_eval.simple_evaluate(model="mentalese", model_args="pretrained=runs/codi/model", tasks=["gsm8k"])

Registration. lm-eval (0.4.13, and its main branch) finds models in its registry only: `@register_model`, its
own through a fixed table (lm_eval/models/__init__.py). It reads no package entry points, so the stock `lm_eval`
command never sees a model that nothing imported. `mentalese-lm-eval` (console script) and
`python -m mentalese.lm_eval_backend` import this module and run lm-eval's own CLI with the same arguments. The
name is registered by path ("mentalese.lm_eval_backend:MentaleseLM"), so both ways register the same thing.

Requests:
- generate_until: `decoding.loop.decode`, batched (`batch_size` = decode.batch_size), with the strategy that
  `api.load(pretrained).strategy(...)` builds, as `mentalese eval` does: token decoding (greedy or sampled), soft
  thinking (vanilla, dirichlet, gumbel; Cold Stop), a saved CODI or Coconut model's continuous thoughts. Prompts are
  tokenised and left-truncated as HFLM does; a row stops at eos or at its next step once its text holds an `until`
  string (decoding/stop_strings.py); texts are cut with lm-eval's own `postprocess_generated_text`, as HFLM's.
- loglikelihood, loglikelihood_rolling: one teacher-forced forward per batch, with HFLM's tokenisation (TemplateLM's
  `_encode_pair` and empty-context rule, HFLM's `tok_encode`, prefix token and rolling windows). A strategy under
  which the likelihood of a given text means nothing (soft thinking, CODI, Coconut, sampled decoding) is refused.

Sampling: a request's gen_kwargs (the task's generation_kwargs, updated by `--gen_kwargs`) set decode.do_sample/
temperature/top_k/top_p/min_p/max_new_tokens for that request; model_args decode.* fill the keys a request leaves
unset; one key set in both to different values is an error (one owner per setting). Each group of requests that
share gen_kwargs is one `decode` call seeded with shard_seed(decode.seed, k), k the group's index in the call: the
`repeats: N` copies of a request are independent draws, and a run is reproducible (lm-eval's --seed does not
reach this generator).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import lm_eval.models  # noqa: F401  lm-eval's own models first: get_model() fills an *empty* registry only
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import model_registry
from lm_eval.models.utils import (
    DEFAULT_MAX_LENGTH,
    handle_stop_sequences,
    has_bos_prefix,
    postprocess_generated_text,
    resolve_max_length,
)
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from mentalese.api import load, override_values
from mentalese.config import build_config, config_to_dict, merge
from mentalese.decoding.loop import DecodeConfig, decode
from mentalese.decoding.soft_thinking import MODES, SoftThinkingConfig
from mentalese.decoding.stop_strings import StopAtStrings
from mentalese.errors import MentaleseError
from mentalese.evaluation.run import LATENT_KINDS, resolve_strategy
from mentalese.sharding import shard_seed

log = logging.getLogger(__name__)
MODEL_NAME = "mentalese"
LENGTH_KEYS = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")  # lm-eval's priority order
SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p", "min_p")


@dataclass
class BackendArgs:
    """model_args of `--model mentalese` (batch_size and device also come from lm-eval's --batch_size/--device)."""

    pretrained: str = field(default="", metadata={
        "help": "hub name or path: a plain, CODI, Coconut or BoLT model (api.load)"})
    strategy: str = field(default="auto", metadata={
        "help": "auto | token | soft_thinking | codi | coconut (as `mentalese eval`), or a soft thinking mode: "
                "vanilla | dirichlet | gumbel (= strategy=soft_thinking soft_thinking.mode=<mode>)"})
    dtype: str = field(default="auto", metadata={"help": "model dtype (auto: bf16 on GPUs that have it; CODI: fp32)"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:1, auto"})
    max_length: int | None = field(default=None, metadata={
        "help": "context window in tokens; default: the model config's (n_positions, max_position_embeddings), "
                "as HFLM"})
    decode: DecodeConfig = field(default_factory=DecodeConfig, metadata={
        "help": "decoding settings; a request's gen_kwargs set the sampling keys and max_new_tokens they name"})
    soft_thinking: SoftThinkingConfig | None = field(default=None, metadata={"help": "soft thinking settings"})


def backend_args(model_args: dict[str, Any]) -> tuple[BackendArgs, set[str]]:
    """The parsed model_args (dotted or nested keys) and the decode.* keys they name."""
    values = override_values(model_args)
    mode = values.get("strategy")
    if mode in MODES:  # strategy=gumbel: soft thinking in that mode
        soft = values.get("soft_thinking") or {}
        if not isinstance(soft, dict) or soft.get("mode", mode) != mode:
            raise MentaleseError(f"model_args strategy={mode} but soft_thinking.mode={soft.get('mode')}: give one")
        values = merge(values, {"strategy": "soft_thinking", "soft_thinking": {**soft, "mode": mode}})
    if not values.get("pretrained"):
        raise MentaleseError("model_args need pretrained=<hub name or path of the model>")
    decode_keys = set(values.get("decode") or {})
    return build_config(BackendArgs, values, where="model_args"), decode_keys


def request_values(gen_kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(decode.* values a request names, its until strings), with lm-eval's rules: the first length alias by
    priority, temperature > 0 without do_sample samples, do_sample=false decodes greedily (temperature 0)."""
    kwargs = dict(gen_kwargs)
    until = kwargs.pop("until", None)
    unknown = sorted(k for k in kwargs if k not in LENGTH_KEYS + SAMPLING_KEYS)
    if unknown:
        raise MentaleseError(f"gen_kwargs {', '.join(unknown)} are not supported by the mentalese backend; it takes "
                             f"until, {', '.join(LENGTH_KEYS)}, {', '.join(SAMPLING_KEYS)}")
    values = {k: kwargs[k] for k in SAMPLING_KEYS if kwargs.get(k) is not None}
    length = next((kwargs[k] for k in LENGTH_KEYS if kwargs.get(k) is not None), None)
    if length is not None:
        values["max_new_tokens"] = length
    if "do_sample" not in values and float(values.get("temperature", 0)) > 0:
        values["do_sample"] = True
    if values.get("do_sample") is False and "temperature" in values:
        values["temperature"] = 0.0
    return values, list(until) if isinstance(until, (list, tuple)) else until


class MentaleseLM(TemplateLM):
    """lm-eval's `LM` over a mentalese model and strategy; see the module docstring."""

    def __init__(self, pretrained: str = "", batch_size: int | str | None = None, max_batch_size: int | None = None,
                 device: str | None = None, **model_args: Any) -> None:
        super().__init__()
        if isinstance(batch_size, str) and batch_size.startswith("auto"):
            raise MentaleseError("batch_size=auto is not supported by the mentalese backend (it does not probe "
                                 "memory): give a number")
        if max_batch_size is not None:
            raise MentaleseError("max_batch_size goes with batch_size=auto, which the mentalese backend lacks")
        given = override_values(dict(model_args, pretrained=pretrained))
        if "batch_size" in (given.get("decode") or {}):
            raise MentaleseError("set the batch size with lm-eval's --batch_size (or batch_size=N in model_args), "
                                 "not decode.batch_size")
        if batch_size is not None:
            given = merge(given, {"decode": {"batch_size": int(batch_size)}})
        if device is not None:
            given["device"] = device
        args, self.decode_keys = backend_args(given)
        args.device = _available(args.device)
        self.args = args
        self.loaded = load(args.pretrained, device=args.device, dtype=args.dtype)
        self.model, self.tokenizer = self.loaded.model, self.loaded.tokenizer
        self.strategy = self.loaded.strategy(args.strategy, soft_thinking=args.soft_thinking)
        latent_kind = self.loaded.kind if self.loaded.kind in LATENT_KINDS else None
        self.strategy_name = resolve_strategy(args.strategy, latent_kind, args.soft_thinking is not None,
                                              args.pretrained)
        self.base_decode = args.decode
        self.base_decode.stop_token_ids = sorted({*self.base_decode.stop_token_ids, *self.loaded.stop_token_ids})
        self.strategy.bind_sampling(self.base_decode.sampling())  # settings it cannot honour fail here
        self._device = self.model.get_input_embeddings().weight.device
        self.add_bos_token = None if self.base_decode.add_special_tokens else False  # as HFLM's add_bos_token
        self.model.eval()

    # --- what lm-eval reads -------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:  # HFLM's: the context of an empty-context request
        return self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self.args.max_length or resolve_max_length(self.model.config, self.tokenizer, default=DEFAULT_MAX_LENGTH)

    @property
    def max_gen_toks(self) -> int:
        return self.base_decode.max_new_tokens

    @property
    def batch_size(self) -> int:
        return self.base_decode.batch_size

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The tokenizer's chat template, as HFLM applies it (a template that rejects the system role gets the
        history without it)."""
        import jinja2

        def render(history):
            return self.tokenizer.apply_chat_template(history, tokenize=False,
                                                      add_generation_prompt=add_generation_prompt,
                                                      continue_final_message=not add_generation_prompt)
        try:
            return render(chat_history)
        except jinja2.exceptions.TemplateError:
            log.warning("the chat template failed; retrying without the system role")
            return render([m for m in chat_history if m["role"] != "system"])

    def get_model_info(self) -> dict[str, Any]:
        return {"model_num_parameters": sum(p.numel() for p in self.model.parameters()),
                "model_dtype": str(self.model.dtype), "mentalese_kind": self.loaded.kind,
                "mentalese_strategy": self.strategy_name, "mentalese_model_args": config_to_dict(self.args)}

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None,
                   **kwargs) -> list[int]:
        """HFLM's: the tokenizer's special tokens unless told otherwise, none when the text starts with BOS."""
        flags = {} if add_special_tokens is None and self.add_bos_token is None else {
            "add_special_tokens": add_special_tokens if add_special_tokens is not None else self.add_bos_token}
        if add_special_tokens is None and has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
            flags["add_special_tokens"] = False
        ids = self.tokenizer.encode(string, **flags)
        return ids[-left_truncate_len:] if left_truncate_len else ids

    # --- generation -----------------------------------------------------------------------

    def request_decode(self, gen_kwargs: dict[str, Any], group: int) -> tuple[DecodeConfig, list[str]]:
        """The DecodeConfig of one gen_kwargs group, and its stop strings (eos text added, as HFLM does)."""
        values, until = request_values(gen_kwargs)
        for key, value in values.items():
            if key in self.decode_keys and value != getattr(self.base_decode, key):
                raise MentaleseError(f"model_args decode.{key}={getattr(self.base_decode, key)} but the request's "
                                     f"gen_kwargs say {key}={value}: set it in one place (--gen_kwargs overrides a "
                                     f"task's generation_kwargs)")
        base = config_to_dict(self.base_decode)
        config = build_config(DecodeConfig, {**base, **values, "seed": shard_seed(self.base_decode.seed, group)},
                              where="gen_kwargs")
        eos = self.tokenizer.decode(self.eot_token_id, skip_special_tokens=False)
        return config, handle_stop_sequences(until, eos=eos)

    def prompt_ids(self, context: str, max_new_tokens: int) -> list[int]:
        """The context laid out for the model (BoLT: its prompt layout), tokenised, left-truncated as HFLM does."""
        room = self.max_length - max_new_tokens
        if room <= 0:
            raise MentaleseError(f"max_gen_toks={max_new_tokens} leaves no room for a prompt in the model's "
                                 f"max_length={self.max_length}")
        ids = self.tok_encode(self.loaded.prompt(context, "{question}"))
        if len(ids) > room:
            log.warning("prompt of %d tokens left-truncated to %d", len(ids), room)
        return ids[-room:]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(json.dumps(req.args[1], sort_keys=True, default=str), []).append(i)
        out: list[str] = [""] * len(requests)
        for group, indices in enumerate(groups.values()):
            gen_kwargs = requests[indices[0]].args[1]
            config, until = self.request_decode(gen_kwargs, group)
            contexts = [requests[i].args[0] for i in indices]
            strategy = self.strategy
            watched = [s for s in until if s and s not in self.tokenizer.all_special_tokens]  # eos: a stop id already
            if watched:
                strategy = StopAtStrings(strategy, self.tokenizer, watched, self.eot_token_id)
            results = decode(self.model, self.tokenizer, [self.prompt_ids(c, config.max_new_tokens) for c in contexts],
                             config, strategy, progress=not disable_tqdm)
            for i, context, res in zip(indices, contexts, results):
                if res.error:
                    log.warning("request %d: %s", i, res.error)
                out[i] = postprocess_generated_text(res.text, until, think_end_token=None)
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), out[i])
        return out

    # --- likelihoods -----------------------------------------------------------------------

    def refuse_likelihood(self) -> None:
        if self.strategy_name == "soft_thinking":
            raise MentaleseError("loglikelihood requests have no meaning under soft thinking (it feeds concept "
                                 "tokens, not the text scored): use strategy=token for this task")
        if self.strategy_name in LATENT_KINDS:
            raise MentaleseError(f"loglikelihood requests have no meaning for a {self.strategy_name} model (its "
                                 "answers follow continuous thoughts, not the text scored): use generate_until tasks")
        if not self.base_decode.sampling().greedy:
            raise MentaleseError("loglikelihood requests have no meaning with sampling settings (decode.do_sample="
                                 "true): drop the decode.* sampling settings from model_args")

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        self.refuse_likelihood()
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """HFLM's rolling windows (each token predicted once, with as much context as fits), summed per text."""
        self.refuse_likelihood()
        windows, owner = [], []
        for i, req in enumerate(requests):
            tokens = self.tok_encode(req.args[0])
            for pair in get_rolling_token_windows(token_list=tokens, prefix_token=self.prefix_token_id,
                                                  max_seq_len=self.max_length, context_len=1):
                windows.append((None, *make_disjoint_window(pair)))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (logprob, _) in zip(owner, self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)):
            totals[i] += logprob
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    @torch.no_grad()
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """(sum of log p(continuation | context), whether greedy decoding writes the continuation) per request.
        Rows longer than max_length + 1 lose tokens on the left (HFLM's rule); log-softmax in float32."""
        limit = self.max_length
        for _, _, continuation in requests:
            if not 0 < len(continuation) <= limit:
                raise MentaleseError(f"a continuation of {len(continuation)} tokens does not fit max_length={limit}")
        inputs = [(context + continuation)[-(limit + 1):][:-1] for _, context, continuation in requests]
        order = sorted(range(len(requests)), key=lambda i: -len(inputs[i]))
        pad = self.tokenizer.pad_token_id
        out: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            width = len(inputs[batch[0]])
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(batch):
                ids[row, :len(inputs[i])] = torch.tensor(inputs[i])
                mask[row, :len(inputs[i])] = 1
            first = min(len(inputs[i]) - len(requests[i][2]) for i in batch)  # earliest position scored
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                logits_to_keep=width - first).logits
            logprobs = F.log_softmax(logits.float(), dim=-1)
            for row, i in enumerate(batch):
                key, _, continuation = requests[i]
                end = len(inputs[i]) - first
                scored = logprobs[row, end - len(continuation):end]
                target = torch.tensor(continuation, device=scored.device)
                out[i] = (float(scored.gather(-1, target[:, None]).sum()), bool((scored.argmax(-1) == target).all()))
                if key is not None:
                    self.cache_hook.add_partial("loglikelihood", key, out[i])
        return out


def _available(device: str) -> str:
    """lm-eval's CLI passes --device cuda:0 by default; without CUDA that means the CPU (as HFLM falls back)."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        log.warning("device %s requested but CUDA is not available: using the CPU", device)
        return "cpu"
    return device


model_registry.register(MODEL_NAME, target="mentalese.lm_eval_backend:MentaleseLM")  # by path: see the docstring


def main() -> None:
    """`mentalese-lm-eval ...`: lm-eval's command line, with `--model mentalese` registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
