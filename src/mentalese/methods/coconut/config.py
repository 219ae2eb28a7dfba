"""`CoconutConfig`: every Coconut knob, with the official defaults and the paper/code disagreements,
and `stage_plan(cfg)`: which curriculum stages a run trains, and for how long.

Defaults follow the official code (github facebookresearch/coconut @27273cb, args/gsm_coconut.yaml:
GPT-2 on GSM8k, c=2, 3 latent stages of 3 epochs, lr 1e-4, weight decay 0.01, constant lr, no
gradient clipping, 32 per GPU x 4 GPUs), which produced the published numbers. docs/coconut.md
lists every place where the paper and that code differ and what the library does.

Stages (official `run.py`: stage = epoch // epochs_per_stage). Stage k (1 <= k <= max_latent_stage)
replaces the first k CoT steps by k * c_thought continuous thoughts; stage 0 is the full CoT with
empty markers; the FINAL stage (index max_latent_stage + 1, every epoch past the last latent stage
in the official loop) removes all remaining steps and uses max_latent_stage * c_thought thoughts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass

from mentalese.errors import MentaleseError
from mentalese.methods.base_config import SupervisedRunFields, shared_field
from mentalese.methods.step_supervision import StepSupervision

MODES = ("coconut", "pause_as_thought", "no_curriculum")


@dataclass
class CoconutConfig(SupervisedRunFields):
    """Coconut training: a multi-stage curriculum that replaces CoT steps by continuous thoughts."""

    mode: str = field(default="coconut", metadata={
        "help": "coconut (last hidden state fed back as the next input), pause_as_thought (the same curriculum, "
                "thoughts are a learned <|latent|> token embedding: no recurrence, one forward pass; paper "
                "ablation) or no_curriculum (train the final stage only, for the whole curriculum's budget; "
                "paper ablation 'w/o curriculum'). No-CoT/CoT baselines: the sft family"})
    c_thought: int = field(default=2, metadata={
        "help": "continuous thoughts per replaced reasoning step c (official: 2 GSM8k, 1 ProntoQA/ProsQA)"})
    max_latent_stage: int = field(default=3, metadata={
        "help": "last stage that replaces steps one at a time (official: 3 GSM8k, 6 ProntoQA/ProsQA); the "
                "final stage after it removes every remaining step and keeps max_latent_stage * c thoughts"})
    start_stage: int = field(default=1, metadata={
        "help": "first stage trained. 1 = start from a CoT-SFT model, which stands for stage 0 (official GSM8k: "
                "resume: 3 with 3 epochs per stage); 0 = train stage 0 (full CoT, empty markers) too (official "
                "ProntoQA/ProsQA)"})
    epochs_per_stage: int = field(default=3, metadata={
        "help": "epochs of each stage (official: 3 GSM8k, 5 ProntoQA/ProsQA); the run's epochs are "
                "num_train_epochs counted from stage 0, as in the official loop"})
    num_train_epochs: float = field(default=25, metadata={
        "help": "official num_epochs: the last epoch (counted from stage 0) trained; epochs past the last latent "
                "stage form the final stage (official: 25 GSM8k -> 13 final epochs; 50 ProntoQA/ProsQA)"})
    steps_per_stage: int | None = field(default=None, metadata={
        "help": "train every stage for this many optimizer steps instead of the epoch schedule (our toy runs)"})
    final_stage_steps: int | None = field(default=None, metadata={
        "help": "step schedules: optimizer steps of the final stage; None = as long as the others; 0 = no final "
                "stage (stop at max_latent_stage, e.g. when it already replaces every step)"})
    pad_latent_to_max: bool = field(default=True, metadata={
        "help": "final stage: max_latent_stage * c thoughts for every example (official recipes: true); false = "
                "min(steps, max_latent_stage) * c. Stages 1..max_latent_stage use k * c thoughts either way, "
                "even for an example with fewer than k steps (all its steps removed), as the official code does"})
    uniform_prob: float = field(default=0.0, metadata={
        "help": "with this probability an example is trained at a stage drawn uniformly from 0..its number of "
                "steps instead of the scheduled one (official: 0; 0.3 in the paper's analysis runs). Drawn once "
                "per example and stage (the official code redraws every epoch)"})
    reset_optimizer: bool = field(default=True, metadata={
        "help": "fresh AdamW state at every stage (official: true; the official loop even re-creates it at every "
                "epoch). false = the state is carried from one stage to the next"})
    max_length: int | None = field(default=None, metadata={
        "help": "skip (and count) examples whose full-CoT sequence is longer; None = no limit (official)"})
    step_supervision: StepSupervision = field(default_factory=StepSupervision, metadata={
        "help": "per-thought step supervision, NOT part of Coconut (docs/step_supervision.md): the c thoughts "
                "that replace step s are tied to it. kind=result_token (the LM's output at the position before "
                "each thought predicts the first token of its step's result) or kind=step_decoder (SIM-CoT: an "
                "auxiliary decoder, training only, rebuilds the step from its c thoughts; SIM-CoT's Coconut "
                "setting: beyond_steps=answer, decoder_loss_mean=row). thoughts_per_step must equal c_thought"})
    cot_step_separator: str = field(default=" ", metadata={
        "help": "joins the CoT steps, as CoT-SFT writes them (the official code writes one step per line)"})
    answer_prompt: str = shared_field("answer_prompt", note="official: '###'; ours matches CoT-SFT and the graders")
    start_latent_token: str = field(default="<|start-latent|>", metadata={"help": "opens the thoughts (official)"})
    end_latent_token: str = field(default="<|end-latent|>", metadata={"help": "closes them (official)"})
    latent_token: str = field(default="<|latent|>", metadata={
        "help": "placeholder of a thought (official); in pause_as_thought its learned embedding is the pause token"})
    new_token_init: str = field(default="<<", metadata={
        "help": "initial embedding of the three new tokens: copy this token's row (official: '<<', which GPT-2 "
                "has; input and lm_head rows), or mean | hf | normal (models/loading.py)"})

    # --- Trainer fields with the official values ---
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (official: 1e-4)"})
    weight_decay: float = field(default=0.01, metadata={
        "help": "AdamW weight decay (official: 0.01, on every parameter; Trainer exempts biases and norms)"})
    lr_scheduler_type: str = field(default="constant", metadata={
        "help": "official: constant (no scheduler, no warmup); a schedule restarts at every stage"})
    max_grad_norm: float = field(default=0.0, metadata={"help": "gradient clipping; 0 = none (official)"})
    per_device_train_batch_size: int = field(default=32, metadata={
        "help": "official: 32 per GPU on 4 GPUs (128 in all); on one device use gradient_accumulation_steps=4"})

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise MentaleseError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.c_thought < 1:
            raise MentaleseError(f"c_thought must be >= 1 (thoughts per replaced step), got {self.c_thought}")
        if self.max_latent_stage < 1:
            raise MentaleseError(f"max_latent_stage must be >= 1, got {self.max_latent_stage}")
        if not 0 <= self.start_stage <= self.max_latent_stage + 1:
            raise MentaleseError(f"start_stage must be in 0..{self.max_latent_stage + 1} (max_latent_stage + 1 = "
                                 f"the final stage), got {self.start_stage}")
        if self.epochs_per_stage < 1:
            raise MentaleseError(f"epochs_per_stage must be >= 1, got {self.epochs_per_stage}")
        for name in ("steps_per_stage", "final_stage_steps", "max_length"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "final_stage_steps" else 1):
                raise MentaleseError(f"{name} must be >= {0 if name == 'final_stage_steps' else 1}, got {value}")
        if not 0.0 <= self.uniform_prob <= 1.0:
            raise MentaleseError(f"uniform_prob must be in [0, 1], got {self.uniform_prob}")
        if len({self.start_latent_token, self.end_latent_token, self.latent_token}) < 3:
            raise MentaleseError("start_latent_token, end_latent_token and latent_token must differ")
        if self.lora is not None:
            raise MentaleseError("Coconut fine-tunes the whole model (as the official code does); lora is not "
                                 "supported: remove it")
        if self.gradient_checkpointing:
            raise MentaleseError("gradient_checkpointing is not supported: the latent passes need the KV cache, "
                                 "which transformers turns off under checkpointing")
        sup = self.step_supervision
        if sup.on and sup.thoughts_per_step != self.c_thought:
            raise MentaleseError(f"step_supervision.thoughts_per_step={sup.thoughts_per_step} but c_thought="
                                 f"{self.c_thought}: Coconut replaces each step by c_thought thoughts, so set "
                                 f"step_supervision.thoughts_per_step={self.c_thought}")
        if sup.on and self.mode == "pause_as_thought":
            raise MentaleseError("step_supervision needs continuous thoughts; mode=pause_as_thought has none")
        self.remove_unused_columns = False  # the collator reads every column
        if self.ddp_find_unused_parameters is None and sup.on and sup.kind == "step_decoder":
            self.ddp_find_unused_parameters = True  # a rank's batch can leave decoder slots without a step
        super().__post_init__()
        stage_plan(self)  # schedule errors now, before any run dir exists

    def to_dict(self) -> dict:
        # nested settings (step_supervision) as plain dicts: TrainingArguments.to_json_string must write them
        return {k: asdict(v) if is_dataclass(v) else v for k, v in super().to_dict().items()}

    @property
    def final_stage(self) -> int:
        return self.max_latent_stage + 1

    @property
    def step_schedule(self) -> bool:
        return self.steps_per_stage is not None or self.max_steps > 0


@dataclass(frozen=True)
class Stage:
    index: int  # 0 = full CoT, 1..max_latent_stage, max_latent_stage + 1 = final
    steps: int | None = None  # optimizer steps (step schedules)
    epochs: int | None = None  # epochs (the official epoch schedule)

    @property
    def length(self) -> dict:
        return {"max_steps": self.steps} if self.steps is not None else {"num_train_epochs": self.epochs}


def stage_plan(cfg: CoconutConfig) -> list[Stage]:
    """The stages `cfg` trains, in order, each with its length.

    - Epoch schedule (official): epochs start_stage * epochs_per_stage .. num_train_epochs - 1, each at
      stage min(epoch // epochs_per_stage, final).
    - Step schedule: steps_per_stage per stage, or max_steps (the whole run) split evenly over the stages
      (the last one takes the remainder; a given final_stage_steps is taken off the top first).
    - no_curriculum: the final stage alone, for as long as the whole curriculum would train.
    """
    regular = list(range(cfg.start_stage, cfg.max_latent_stage + 1))
    if cfg.step_schedule:
        plan = _step_plan(cfg, regular)
    else:
        if cfg.final_stage_steps is not None:
            raise MentaleseError("final_stage_steps applies to step schedules (steps_per_stage or max_steps); the "
                                 "epoch schedule gives the final stage num_train_epochs minus the earlier stages")
        if cfg.num_train_epochs != int(cfg.num_train_epochs):
            raise MentaleseError(f"num_train_epochs must be a whole number of epochs, got {cfg.num_train_epochs}")
        counts: dict[int, int] = {}
        for epoch in range(cfg.start_stage * cfg.epochs_per_stage, int(cfg.num_train_epochs)):
            stage = min(epoch // cfg.epochs_per_stage, cfg.final_stage)
            counts[stage] = counts.get(stage, 0) + 1
        plan = [Stage(k, epochs=n) for k, n in counts.items()]
    if not plan:
        raise MentaleseError(f"nothing to train: num_train_epochs={cfg.num_train_epochs} ends before start_stage="
                             f"{cfg.start_stage} (epochs_per_stage={cfg.epochs_per_stage})")
    if cfg.mode == "no_curriculum":
        if plan[-1].steps is not None:
            return [Stage(cfg.final_stage, steps=sum(s.steps for s in plan))]
        return [Stage(cfg.final_stage, epochs=sum(s.epochs for s in plan))]
    return plan


def _step_plan(cfg: CoconutConfig, regular: list[int]) -> list[Stage]:
    if cfg.steps_per_stage is not None and cfg.max_steps > 0:
        raise MentaleseError(f"set steps_per_stage or max_steps (the whole run, split over the stages), not both "
                             f"(got {cfg.steps_per_stage} and {cfg.max_steps})")
    final = cfg.final_stage_steps
    if cfg.mode == "no_curriculum" and final == 0:
        raise MentaleseError("mode=no_curriculum trains the final stage: final_stage_steps=0 leaves nothing")
    if cfg.steps_per_stage is not None:
        lengths = {k: cfg.steps_per_stage for k in regular}
        if final != 0:
            lengths[cfg.final_stage] = cfg.steps_per_stage if final is None else final
    else:  # max_steps: the whole run, split evenly; the last stage takes the remainder
        fixed = {cfg.final_stage: final} if final else {}  # a given final stage length
        split = regular + ([cfg.final_stage] if final is None else [])
        budget = cfg.max_steps - sum(fixed.values())
        share = budget // len(split) if split else 0
        lengths = {k: share for k in split}
        if split:
            lengths[split[-1]] += budget - share * len(split)
        elif budget:
            raise MentaleseError(f"max_steps={cfg.max_steps} but the only stage trained is the final one, with "
                                 f"final_stage_steps={final}: give one of them")
        lengths.update(fixed)
        if any(n < 1 for n in lengths.values()):
            raise MentaleseError(f"max_steps={cfg.max_steps} is too short for {len(lengths)} stages "
                                 f"(final_stage_steps={final})")
    return [Stage(k, steps=n) for k, n in lengths.items()]


def latent_steps(stage: int, num_steps: int, max_latent_stage: int, pad_latent_to_max: bool) -> tuple[int, int]:
    """(CoT steps removed, steps' worth of thoughts) of an example with `num_steps` steps at `stage`, as the
    official `get_cot_latent_dataset` computes them; multiply the second by c_thought for the thoughts."""
    if stage > max_latent_stage:  # the final stage: everything removed
        return num_steps, max_latent_stage if pad_latent_to_max else min(num_steps, max_latent_stage)
    return min(stage, num_steps), stage  # not capped by num_steps (official)


def inference_thoughts(c_thought: int, max_latent_stage: int, last_stage: int) -> int:
    """Thoughts a model trained up to `last_stage` thinks at inference (official get_question_latent_dataset
    with pad_latent_to_max: c * min(stage, max_latent_stage))."""
    return c_thought * min(last_stage, max_latent_stage)
