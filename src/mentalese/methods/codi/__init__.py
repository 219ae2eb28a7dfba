"""CODI: continuous chain-of-thought by self-distillation (Shen et al., EMNLP 2025). See docs/codi.md.

    cfg = load_config(CODIConfig, resolve_recipe("codi/chain"), ["output_dir=runs/codi"])
    model_dir = train_codi(cfg)
    model, tokenizer = load_codi(model_dir)
    results = decode(model.lm, tokenizer, prompts, DecodeConfig(), strategy=model.strategy())
"""

from mentalese.methods.codi.config import CODIConfig
from mentalese.methods.codi.loss import codi_loss, distillation_loss
from mentalese.methods.codi.model import CODIModel, build_codi_model, load_codi, save_codi
from mentalese.methods.codi.trainer import CODITrainer, train_codi

__all__ = ["CODIConfig", "CODIModel", "CODITrainer", "build_codi_model", "codi_loss", "distillation_loss",
           "load_codi", "save_codi", "train_codi"]
