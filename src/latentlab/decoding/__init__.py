"""Decoding: one batched KV-cached loop; strategies plug in per step."""

from latentlab.decoding.loop import DecodeConfig, DecodeResult, decode
from latentlab.decoding.sampling import SamplingConfig
from latentlab.decoding.soft_thinking import SoftThinkingConfig, SoftThinkingStrategy
from latentlab.decoding.strategies import DiscreteStrategy, InputStrategy, StepContext, StepDecision

__all__ = [
    "DecodeConfig", "DecodeResult", "decode", "SamplingConfig",
    "DiscreteStrategy", "InputStrategy", "StepContext", "StepDecision",
    "SoftThinkingConfig", "SoftThinkingStrategy",
]
