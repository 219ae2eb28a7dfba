"""mentalese: reasoning in latent space with Hugging Face language models."""

__version__ = "0.1.0"
