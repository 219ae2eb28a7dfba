"""Training methods: each one a config dataclass + a trainer on transformers `Trainer`."""
