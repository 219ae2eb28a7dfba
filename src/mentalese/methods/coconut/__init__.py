"""Coconut: chain of continuous thought (Hao et al. 2024, arXiv 2412.06769). See docs/coconut.md.

    cfg = load_config(CoconutConfig, resolve_recipe("coconut/chain"), ["output_dir=runs/coconut",
                      "model_name_or_path=runs/cot/model"])
    model_dir = train_coconut(cfg)                       # stage-<k>/ per curriculum stage, then model/
    model, tokenizer = load_coconut(model_dir)
    results = decode(model.lm, tokenizer, prompts, DecodeConfig(), strategy=model.strategy())
"""

from mentalese.methods.coconut.config import CoconutConfig, Stage, latent_steps, stage_plan
from mentalese.methods.coconut.data import collate_coconut, stage_rows, tokenize_coconut_examples
from mentalese.methods.coconut.latent_strategy import CoconutStrategy
from mentalese.methods.coconut.loss import CoconutOutput, coconut_forward
from mentalese.methods.coconut.model import (CoconutModel, build_coconut_model, is_saved_coconut, load_coconut,
                                             save_coconut)
from mentalese.methods.coconut.trainer import CoconutTrainer, train_coconut

__all__ = ["CoconutConfig", "CoconutModel", "CoconutOutput", "CoconutStrategy", "CoconutTrainer", "Stage",
           "build_coconut_model", "coconut_forward", "collate_coconut", "is_saved_coconut", "latent_steps",
           "load_coconut", "save_coconut", "stage_plan", "stage_rows", "tokenize_coconut_examples", "train_coconut"]
