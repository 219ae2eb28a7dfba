"""Decoding: one batched KV-cached loop; strategies plug in per step."""

from mentalese.decoding.loop import DecodeConfig, DecodeResult, decode
from mentalese.decoding.sampling import SamplingConfig
from mentalese.decoding.soft_thinking import SoftThinkingConfig, SoftThinkingStrategy
from mentalese.decoding.strategies import DiscreteStrategy, InputStrategy, StepContext, StepDecision

__all__ = [
    "DecodeConfig", "DecodeResult", "decode", "SamplingConfig",
    "DiscreteStrategy", "InputStrategy", "StepContext", "StepDecision",
    "SoftThinkingConfig", "SoftThinkingStrategy",
]
