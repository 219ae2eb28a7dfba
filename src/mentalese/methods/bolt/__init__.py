"""BoLT: learning from latent thoughts (Ruan et al., 2025, arXiv 2503.18866). See docs/bolt.md.

    data_format  special tokens, sentence chunking, prior/posterior layouts, packing
    synthesis    teacher thoughts (local HF model or OpenAI-compatible endpoint), on-disk cache
    estep        proposals from the model's posterior, importance weights, selection, ELBO; sharded output
    mstep        continued pretraining on the thought-augmented corpus (transformers Trainer)
    config, em   `BoltConfig` and the driver: warm start, then E-step -> M-step -> evaluation per iteration
    toy, experiment, report   the CPU toy corpus, the comparison of variants, its markdown report
    (the demo's BoLT rows and `mentalese bench bolt-estep` live in mentalese/commands/)
"""
