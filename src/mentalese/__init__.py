"""mentalese: reasoning in latent space with Hugging Face language models.

    import mentalese
    model_dir = mentalese.train("sft/chain_cot", {"output_dir": "runs/cot"})
    metrics = mentalese.evaluate(model=str(model_dir), benchmark="chain")
    loaded = mentalese.load(model_dir)

`train`, `evaluate` and `load` live in mentalese/api.py and are imported on first use, so that
`import mentalese` stays cheap (no torch, no transformers).
"""

__version__ = "0.1.0"
__all__ = ["train", "evaluate", "load"]


def __getattr__(name: str):
    if name in __all__:
        from mentalese import api

        return getattr(api, name)
    raise AttributeError(f"module 'mentalese' has no attribute {name!r}")
