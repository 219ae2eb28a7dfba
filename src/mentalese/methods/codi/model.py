"""The CODI model: a causal LM (full or LoRA), the continuous-thought projection, two special tokens.

    model, tokenizer = build_codi_model(cfg)         # from a CODIConfig (hub name, local path, tiny-*)
    save_codi(model, tokenizer, "runs/codi/model")
    model, tokenizer = load_codi("runs/codi/model")   # one call, strict, identical outputs

A saved directory holds `codi_config.json`, the tokenizer, `projection.safetensors` and either
`model/` (full fine-tuning: a standalone HF model with the resized vocabulary) or `adapter/` (PEFT
LoRA adapter) plus `special_token_rows.safetensors` (the <bot>/<eot> embedding rows, so a random
initialisation is restored exactly) and the base model's name or path.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mentalese.errors import MentaleseError
from mentalese.models.loading import load_model_and_tokenizer, load_tokenizer
from mentalese.models.tiny import resolve_base_model
from mentalese.atomic_files import write_text_atomic

log = logging.getLogger(__name__)
CONFIG_FILE = "codi_config.json"


class ContinuousThoughtProjection(nn.Module):
    """Dropout -> Linear(d, d_prj) -> GELU -> Linear(d_prj, d) (-> LayerNorm(d)), as in the official code."""

    def __init__(self, hidden_size: int, inner_size: int | None = None, dropout: float = 0.0, layer_norm: bool = True):
        super().__init__()
        inner = inner_size or hidden_size
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, inner), nn.GELU(),
                                 nn.Linear(inner, hidden_size))
        self.norm = nn.LayerNorm(hidden_size) if layer_norm else nn.Identity()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(self.net(hidden.to(self.net[1].weight.dtype)))


@dataclass
class CODISpec:
    """What a saved CODI model needs besides its weights."""

    num_latent: int
    bot_token: str
    eot_token: str
    use_projection: bool
    projection_dim: int | None
    projection_dropout: float
    projection_layer_norm: bool
    lora: bool
    base_model: str  # hub name or path of the base (LoRA); informational for full fine-tuning


class CODIModel(nn.Module):
    """`lm` (PreTrainedModel or PeftModel) + `projection` (None when disabled) + the token ids."""

    accepts_loss_kwargs = False  # Trainer: the loss is CODI's own (no num_items_in_batch; divided by grad. accum.)

    def __init__(self, lm, projection: ContinuousThoughtProjection | None, spec: CODISpec, bot_id: int, eot_id: int):
        super().__init__()
        self.lm, self.projection, self.spec = lm, projection, spec
        self.bot_id, self.eot_id = bot_id, eot_id
        self.config = lm.config  # Trainer reads model.config in places
        self._no_split_modules = getattr(lm, "_no_split_modules", None)  # FSDP auto-wrap reads it

    def forward(self, batch: dict, num_latent: int, **loss_options):
        """CODI's training loss (`codi_loss`) on a collated batch. The trainer calls the model through this,
        so that the DDP/FSDP/DeepSpeed wrapper around it sees the forward (gradient sync, sharded weights)."""
        from mentalese.methods.codi.loss import codi_loss

        return codi_loss(self.lm, self.projection, batch, num_latent, **loss_options)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.projection(hidden) if self.projection is not None else hidden

    def strategy(self, sampling=None, record_thoughts: bool = False):
        """The decoding strategy; its answer tokens take the decode config's sampling settings (`sampling`,
        if given, must equal them)."""
        from mentalese.methods.codi.latent_strategy import CODIStrategy

        return CODIStrategy(self, sampling, record_thoughts=record_thoughts)

    @property
    def device(self) -> torch.device:
        return self.lm.get_input_embeddings().weight.device


def _new_projection(lm, spec: CODISpec) -> ContinuousThoughtProjection | None:
    if not spec.use_projection:
        return None
    weight = lm.get_input_embeddings().weight
    proj = ContinuousThoughtProjection(weight.shape[1], spec.projection_dim, spec.projection_dropout,
                                       spec.projection_layer_norm)
    return proj.to(device=weight.device, dtype=weight.dtype)


def spec_from_config(cfg, base_model: str) -> CODISpec:
    return CODISpec(cfg.num_latent, cfg.bot_token, cfg.eot_token, cfg.use_projection, cfg.projection_dim,
                    cfg.projection_dropout, cfg.projection_layer_norm, cfg.lora is not None, base_model)


def base_model_path(cfg) -> str:
    """The hub name/path to load; for tiny-* a random model built once in output_dir/init_model."""
    return resolve_base_model(cfg.model_name_or_path, cfg.output_dir, cfg.seed, cfg.tiny_model_options)


def build_codi_model(cfg) -> tuple[CODIModel, object]:
    """Load the base, add <bot>/<eot>, wrap with LoRA if asked, create the projection."""
    base = base_model_path(cfg)
    torch.manual_seed(cfg.seed)
    lm, tokenizer = load_model_and_tokenizer(base, dtype=cfg.dtype, device=str(cfg.device),  # this rank's device
                                             special_tokens=[cfg.bot_token, cfg.eot_token],
                                             special_token_init=cfg.special_token_init)
    bot_id, eot_id = tokenizer.convert_tokens_to_ids([cfg.bot_token, cfg.eot_token])
    if cfg.lora is not None:
        lm = _apply_codi_lora(lm, cfg.lora, [bot_id, eot_id] if cfg.special_tokens_trainable else None)
    elif not cfg.special_tokens_trainable:
        _freeze_rows(lm, [bot_id, eot_id])
    spec = spec_from_config(cfg, base)
    return CODIModel(lm, _new_projection(lm, spec), spec, bot_id, eot_id), tokenizer


def _apply_codi_lora(lm, settings, trainable_token_ids: list[int] | None):
    from peft import LoraConfig, get_peft_model

    if settings.r < 1:
        raise MentaleseError(f"lora r must be >= 1, got {settings.r}")
    return get_peft_model(lm, LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        target_modules=settings.target_modules, modules_to_save=settings.modules_to_save or None,
        trainable_token_indices=trainable_token_ids, task_type="CAUSAL_LM"))


def _freeze_rows(lm, token_ids: list[int]) -> None:
    """Full fine-tuning with frozen special tokens: zero their embedding gradients (weight decay still
    applies to them unless weight_decay=0)."""
    weight = lm.get_input_embeddings().weight
    keep = torch.ones(weight.shape[0], 1, device=weight.device, dtype=weight.dtype)
    keep[token_ids] = 0
    weight.register_hook(lambda grad: grad * keep)


def _unwrapped(module):
    """The plain layer under PEFT wrappers (trainable-token and LoRA layers keep the base weights there)."""
    while module is not None and (hasattr(module, "original_module") or hasattr(module, "base_layer")):
        module = module.original_module if hasattr(module, "original_module") else module.base_layer
    return module


def _embedding_tables(lm) -> dict[str, torch.Tensor]:
    """The base input embedding (and output embedding when untied), without adapter deltas."""
    inp = _unwrapped(lm.get_input_embeddings()).weight
    out = _unwrapped(lm.get_output_embeddings())
    tables = {"input": inp}
    if out is not None and out.weight.data_ptr() != inp.data_ptr():
        tables["output"] = out.weight
    return tables


def save_codi(model: CODIModel, tokenizer, path: str | Path) -> Path:
    """Write a directory that `load_codi` restores exactly."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    spec = model.spec
    if spec.lora:
        # the <bot>/<eot> rows are saved below; the rest of the resized embedding is the base's
        model.lm.save_pretrained(str(path / "adapter"), save_embedding_layers=False)
        base = model.lm.get_base_model()
        ids = torch.tensor([model.bot_id, model.eot_id])
        save_file({k: t[ids].detach().cpu().contiguous() for k, t in _embedding_tables(base).items()},
                  str(path / "special_token_rows.safetensors"))
    else:
        model.lm.save_pretrained(str(path / "model"))
        tokenizer.save_pretrained(str(path / "model"))
    if model.projection is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.projection.state_dict().items()},
                  str(path / "projection.safetensors"))
    tokenizer.save_pretrained(str(path))
    write_text_atomic(path / CONFIG_FILE, json.dumps(asdict(spec), indent=2))
    return path


def load_codi(path: str | Path, dtype: str = "float32", device: str = "auto") -> tuple[CODIModel, object]:
    """Reload a `save_codi` directory: every weight must be found (no silently missing keys)."""
    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        raise MentaleseError(f"{path} is not a saved CODI model (no {CONFIG_FILE})")
    spec = CODISpec(**json.loads((path / CONFIG_FILE).read_text()))
    if spec.lora:
        from peft import PeftModel

        lm, tokenizer = load_model_and_tokenizer(spec.base_model, dtype=dtype, device=device,
                                                 special_tokens=[spec.bot_token, spec.eot_token])
        tokenizer = load_tokenizer(path)
        ids = torch.tensor(tokenizer.convert_tokens_to_ids([spec.bot_token, spec.eot_token]))
        rows = load_file(str(path / "special_token_rows.safetensors"))
        tables = _embedding_tables(lm)
        if set(rows) != set(tables):
            raise MentaleseError(f"{path}: special token rows {sorted(rows)} do not match the model {sorted(tables)}")
        with torch.no_grad():
            for k, t in tables.items():
                t[ids.to(t.device)] = rows[k].to(device=t.device, dtype=t.dtype)
        lm = PeftModel.from_pretrained(lm, str(path / "adapter"))
        _check_adapter_loaded(lm, path / "adapter")
    else:
        lm, tokenizer = load_model_and_tokenizer(path / "model", dtype=dtype, device=device)
    bot_id, eot_id = tokenizer.convert_tokens_to_ids([spec.bot_token, spec.eot_token])
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in (bot_id, eot_id):
        raise MentaleseError(f"{path}: the tokenizer lacks {spec.bot_token!r} or {spec.eot_token!r}")
    projection = _new_projection(lm, spec)
    if projection is not None:
        state = load_file(str(path / "projection.safetensors"))
        projection.load_state_dict(state, strict=True)
    elif (path / "projection.safetensors").exists():
        raise MentaleseError(f"{path}: projection weights present but use_projection is false")
    model = CODIModel(lm, projection, spec, bot_id, eot_id)
    model.eval()
    return model, tokenizer


def _check_adapter_loaded(lm, adapter_dir: Path) -> None:
    """PEFT only warns about missing adapter keys; make it an error."""
    saved = load_file(str(adapter_dir / "adapter_model.safetensors"))
    lora_params = [n for n, _ in lm.named_parameters() if "lora_" in n]
    if len(saved) == 0 or len([k for k in saved if "lora_" in k]) != len(lora_params):
        raise MentaleseError(f"{adapter_dir}: adapter has {len(saved)} tensors, the model expects "
                             f"{len(lora_params)} LoRA weights")
