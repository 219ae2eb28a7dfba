"""`CODIConfig`: every CODI knob, with the official defaults and the paper/code disagreements.

Defaults follow the official code (github zhenyi4/codi @4fd88d4), which produced the published
numbers; where the paper says something else the paper's variant is an option (see docs/codi.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass

from mentalese.errors import MentaleseError
from mentalese.methods.base_config import SupervisedRunFields, shared_field
from mentalese.methods.step_supervision import StepSupervision
from mentalese.models.loading import LoraSettings

DISTILL_LOSSES = ("smooth_l1", "l1", "l2")


@dataclass
class CODIConfig(SupervisedRunFields):
    """CODI training: one LM is teacher (explicit CoT) and student (continuous thoughts) at once."""

    # --- model and data: the shared fields of methods/base_config.py, with CODI's notes ---
    max_length: int = field(default=256, metadata={"help": "max tokens per piece (question, CoT, answer); "
                                                           "longer examples are skipped and counted (official: 256)"})
    lora: LoraSettings | None = shared_field("lora", note="official: r=128, alpha=32, dropout 0.1; GPT-2: c_attn, "
                                                          "c_proj, c_fc; Llama: q,k,v,o,gate,up,down projections")

    # --- continuous thoughts ---
    num_latent: int = field(default=6, metadata={"help": "continuous thoughts n (6 in every published run; 0 allowed)"})
    use_projection: bool = field(default=True, metadata={
        "help": "pass each last hidden state through Dropout-Linear-GELU-Linear(-LayerNorm) before feeding it "
                "back (ablation without it: 42.5 vs 43.7 on GPT-2)"})
    projection_dim: int | None = field(default=None, metadata={
        "help": "inner width of the projection; None = the model width (official: 768 GPT-2, 2048 Llama-1B)"})
    projection_dropout: float = field(default=0.0, metadata={"help": "dropout before the projection (official: 0)"})
    projection_layer_norm: bool = field(default=True, metadata={"help": "LayerNorm at the end of the projection"})
    bot_token: str = field(default="<bot>", metadata={"help": "token that opens the continuous thoughts"})
    eot_token: str = field(default="<eot>", metadata={"help": "token that closes them"})
    special_token_init: str = field(default="mean", metadata={
        "help": "init of the new <bot>/<eot> rows: mean, hf, normal (official: transformers' default resize)"})
    train_special_tokens: bool | None = field(default=None, metadata={
        "help": "train the <bot>/<eot> embeddings. None = official behaviour: trainable with full fine-tuning, "
                "frozen with LoRA (the official LoRA runs freeze the whole embedding; the paper calls them "
                "learnable). With LoRA, True trains only those rows (PEFT trainable_token_indices)"})

    # --- losses ---
    alpha: float = field(default=1.0, metadata={"help": "weight of the student CE (official: 1)"})
    beta: float = field(default=1.0, metadata={"help": "weight of the distillation loss (official: 1 GPT-2, "
                                                       "20 Llama-3.2-1B)"})
    gamma: float = field(default=1.0, metadata={"help": "weight of the teacher CE (official: 1)"})
    distill_loss: str = field(default="smooth_l1", metadata={
        "help": "smooth_l1 (official code, beta=1), l1 (paper) or l2 (official option)"})
    distill_divide_by_std: bool = field(default=True, metadata={
        "help": "divide each layer's loss by the std of the teacher's hidden state there (official code; the "
                "paper normalises the activations instead, which for l1 is the same number)"})
    step_supervision: StepSupervision = field(default_factory=StepSupervision, metadata={
        "help": "per-thought step supervision, NOT part of CODI (docs/step_supervision.md): kind=result_token "
                "(the LM's output at <bot> and at thought k predicts the first token of CoT step k+1's result; "
                "the chain recipe sets it: without it the student stays at chance there, docs/LOG.md) or "
                "kind=step_decoder (SIM-CoT: an auxiliary decoder, training only, rebuilds each teacher CoT step "
                "from the latents <bot>..thought n, one per step)"})
    distill_token: str | None = field(default=None, metadata={
        "help": "distil at the last occurrence of this token (e.g. ':') in the answer prompt instead of the "
                "default position: the last token before the first non-whitespace answer token (':' for GPT-2, "
                "' ' for Llama-3 numeric answers, matching the official code)"})
    distill_offset: int = field(default=0, metadata={"help": "shift the distilled position by this many tokens"})
    include_last_cot: bool = field(default=False, metadata={
        "help": "keep the last CoT step in the teacher's CoT (official: dropped; keeping it gives 31.7 vs 43.7)"})
    cot_step_separator: str = field(default=" ", metadata={"help": "joins CoT steps in the teacher text"})
    answer_prompt: str = shared_field("answer_prompt", note="official: 'The answer is:'")
    drop_non_numeric_answers: bool = field(default=False, metadata={
        "help": "skip (and count) examples whose answer does not start with a digit (official scripts do this, "
                "which also drops negative answers); off unless a recipe sets it"})

    def __post_init__(self) -> None:
        if self.num_latent < 0:
            raise MentaleseError(f"num_latent must be >= 0, got {self.num_latent}")
        if self.distill_loss not in DISTILL_LOSSES:
            raise MentaleseError(f"distill_loss must be one of {DISTILL_LOSSES}, got {self.distill_loss!r}")
        if min(self.alpha, self.beta, self.gamma) < 0:
            raise MentaleseError("alpha, beta and gamma must be >= 0")
        sup = self.step_supervision
        if sup.kind == "result_token" and self.num_latent < 1:
            raise MentaleseError("step_supervision.kind=result_token needs num_latent >= 1")
        if sup.kind == "step_decoder" and self.num_latent + 1 < sup.thoughts_per_step:
            raise MentaleseError(f"step_supervision.kind=step_decoder: the {self.num_latent + 1} latents (<bot> "
                                 f"and {self.num_latent} thoughts) are fewer than thoughts_per_step="
                                 f"{sup.thoughts_per_step}")
        if not 0.0 <= self.projection_dropout < 1.0:
            raise MentaleseError(f"projection_dropout must be in [0, 1), got {self.projection_dropout}")
        if self.projection_dim is not None and self.projection_dim < 1:
            raise MentaleseError(f"projection_dim must be >= 1, got {self.projection_dim}")
        if self.max_length < 4:
            raise MentaleseError(f"max_length must be >= 4, got {self.max_length}")
        if self.bot_token == self.eot_token:
            raise MentaleseError("bot_token and eot_token must differ")
        self.remove_unused_columns = False  # the CODI collator needs every column
        if self.ddp_find_unused_parameters is None:
            # DDP must be told when a trainable module gets no gradient: only the projection without thoughts.
            # Every other weight is used in every step (same passes on every rank: teacher, prefill,
            # num_latent thoughts, decoder), so the cheaper setting is safe (tests/test_distributed.py).
            # The step decoder too: every example has a teacher step, so slot 0 is decoded in every batch,
            # and its unused input embedding (untied models) is frozen.
            self.ddp_find_unused_parameters = self.use_projection and self.num_latent == 0
        super().__post_init__()

    def to_dict(self) -> dict:
        # nested settings (lora, step_supervision) as plain dicts: TrainingArguments.to_json_string (the
        # tensorboard callback) must be able to write them
        return {k: asdict(v) if is_dataclass(v) else v for k, v in super().to_dict().items()}

    @property
    def special_tokens_trainable(self) -> bool:
        return self.lora is None if self.train_special_tokens is None else self.train_special_tokens
