"""The Coconut model: a causal LM, three new tokens and the number of thoughts it thinks.

    model, tokenizer = build_coconut_model(cfg, init_path, stage)   # from a CoconutConfig
    save_coconut(model, tokenizer, "runs/coconut/model")
    model, tokenizer = load_coconut("runs/coconut/model")          # one call, identical outputs

A saved directory is a standard HF model directory (config.json, safetensors, tokenizer with the
three tokens) plus `coconut_config.json` (`CoconutSpec`: mode, thoughts at inference, token names),
so `from_pretrained` loads the LM alone and `mentalese eval` / `mentalese.load` recognise it by the marker.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from mentalese.atomic_files import write_text_atomic
from mentalese.errors import MentaleseError
from mentalese.methods.coconut.config import CoconutConfig, inference_thoughts
from mentalese.methods.coconut.data import LatentTokenIds
from mentalese.methods.step_supervision import StepSupervision, step_supervision_loss
from mentalese.models.loading import add_special_tokens, load_model_and_tokenizer

CONFIG_FILE = "coconut_config.json"


@dataclass
class CoconutSpec:
    """What a saved Coconut model needs besides its weights."""

    mode: str  # coconut | pause_as_thought | no_curriculum
    num_latent: int  # thoughts at inference: c_thought * min(stage, max_latent_stage)
    c_thought: int
    max_latent_stage: int
    stage: int  # the last stage trained
    start_latent_token: str
    end_latent_token: str
    latent_token: str

    @property
    def continuous(self) -> bool:
        return self.mode != "pause_as_thought"


class CoconutModel(nn.Module):
    """`lm` + the ids of <|start-latent|> (bot), <|latent|> and <|end-latent|> (eot) + `spec`."""

    accepts_loss_kwargs = False  # Trainer: the loss is the batch mean (official); divided by grad. accumulation

    def __init__(self, lm, spec: CoconutSpec, ids: LatentTokenIds, step_supervision: StepSupervision | None = None):
        super().__init__()
        self.lm, self.spec, self.ids = lm, spec, ids
        self.step_supervision = step_supervision or StepSupervision()  # training only; not saved
        self.config = lm.config  # Trainer reads model.config in places
        self._no_split_modules = getattr(lm, "_no_split_modules", None)

    def forward(self, input_ids, attention_mask, labels=None, position_ids=None, step_decoder=None, **step_batch):
        """`coconut_forward` on a collated batch, + `step_supervision.weight` x the step loss when it is on
        (`step_batch`: the collator's step keys); the trainer calls the model through this so that a DDP
        wrapper around it sees the forward."""
        from mentalese.methods.coconut.loss import coconut_forward

        out = coconut_forward(self.lm, input_ids, attention_mask, labels, self.ids.latent, position_ids,
                              continuous=self.spec.continuous)
        sup = self.step_supervision
        if sup.on and step_batch and out.thought_mask.shape[1]:
            out.answer_ce = out.loss
            out.step_ce = step_supervision_loss(sup, step_batch, out.thought_logits, out.thought_hidden,
                                                self.lm.get_input_embeddings(), step_decoder)
            out.loss = out.loss + sup.weight * out.step_ce
        return out

    @property
    def bot_id(self) -> int:
        return self.ids.start

    @property
    def eot_id(self) -> int:
        return self.ids.end

    @property
    def latent_id(self) -> int:
        return self.ids.latent

    @property
    def num_latent(self) -> int:
        return self.spec.num_latent

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden  # Coconut feeds the last hidden state back as it is

    def strategy(self, sampling=None, record_thoughts: bool = False):
        """The decoding strategy; answer tokens take the decode config's sampling settings (`sampling`, if
        given, must equal them)."""
        from mentalese.methods.coconut.latent_strategy import CoconutStrategy

        return CoconutStrategy(self, sampling, record_thoughts=record_thoughts)

    @property
    def device(self) -> torch.device:
        return self.lm.get_input_embeddings().weight.device


def spec_for_stage(cfg: CoconutConfig, stage: int) -> CoconutSpec:
    return CoconutSpec(cfg.mode, inference_thoughts(cfg.c_thought, cfg.max_latent_stage, stage), cfg.c_thought,
                       cfg.max_latent_stage, stage, cfg.start_latent_token, cfg.end_latent_token, cfg.latent_token)


def _token_ids(tokenizer, spec: CoconutSpec, where: str) -> LatentTokenIds:
    names = [spec.start_latent_token, spec.latent_token, spec.end_latent_token]
    vocab = tokenizer.get_vocab()
    missing = [t for t in names if t not in vocab]
    if missing:
        raise MentaleseError(f"{where}: the tokenizer lacks {', '.join(missing)}")
    return LatentTokenIds(*(vocab[t] for t in names))


@torch.no_grad()
def copy_token_rows(lm, tokenizer, source: str, targets: list[int]) -> None:
    """Official initialisation: the new rows (input embedding, and lm_head when untied) copy `source`'s row."""
    vocab = tokenizer.get_vocab()
    if source not in vocab:
        raise MentaleseError(f"new_token_init={source!r} is not a token of this tokenizer; name one of its tokens "
                             "or use mean | hf | normal")
    tables = [lm.get_input_embeddings().weight]
    out = lm.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != tables[0].data_ptr():
        tables.append(out.weight)
    for table in tables:
        table[targets] = table[vocab[source]]


def build_coconut_model(cfg: CoconutConfig, init_path: str, stage: int) -> tuple[CoconutModel, object]:
    """Load `init_path` (the base model, or the previous stage's model) and add the three tokens if new."""
    spec = spec_for_stage(cfg, stage)
    names = [spec.start_latent_token, spec.latent_token, spec.end_latent_token]
    lm, tokenizer = load_model_and_tokenizer(init_path, dtype=cfg.dtype, device=str(cfg.device))
    new = [t for t in names if t not in tokenizer.get_vocab()]
    if new:
        by_copy = cfg.new_token_init not in ("mean", "hf", "normal")
        ids = add_special_tokens(lm, tokenizer, new, init="mean" if by_copy else cfg.new_token_init)
        if by_copy:
            copy_token_rows(lm, tokenizer, cfg.new_token_init, ids)
    return CoconutModel(lm, spec, _token_ids(tokenizer, spec, str(init_path)), cfg.step_supervision), tokenizer


def save_coconut(model: CoconutModel, tokenizer, path: str | Path) -> Path:
    """An HF model directory + tokenizer + coconut_config.json, which `load_coconut` restores exactly."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.lm.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    write_text_atomic(path / CONFIG_FILE, json.dumps(asdict(model.spec), indent=2))
    return path


def is_saved_coconut(path: str | Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def load_coconut(path: str | Path, dtype: str = "float32", device: str = "auto") -> tuple[CoconutModel, object]:
    """Reload a `save_coconut` directory."""
    path = Path(path)
    if not is_saved_coconut(path):
        raise MentaleseError(f"{path} is not a saved Coconut model (no {CONFIG_FILE})")
    try:
        spec = CoconutSpec(**json.loads((path / CONFIG_FILE).read_text()))
    except (TypeError, ValueError) as e:
        raise MentaleseError(f"{path / CONFIG_FILE} is not a Coconut spec: {e}") from None
    lm, tokenizer = load_model_and_tokenizer(path, dtype=dtype, device=device)
    model = CoconutModel(lm, spec, _token_ids(tokenizer, spec, str(path)))
    model.eval()
    return model, tokenizer
