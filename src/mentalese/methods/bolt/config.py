"""`BoltConfig`: one dataclass for a BoLT run (data, teacher, E-step, M-step, evaluation).

It extends transformers `TrainingArguments` through the fields every training run shares
(methods/base_config.py: model, tiny-model options, dtype, task), so every Trainer knob of the
M-step (optimiser, schedule, bf16, checkpointing, accelerate/FSDP) comes from the same recipe. Paper settings
(Ruan et al. 2025, TinyLlama-1.1B on FineMath-4+) are the defaults of the BoLT-specific fields
and are written out in recipes/bolt/tinyllama_finemath.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mentalese.errors import MentaleseError
from mentalese.methods.base_config import TrainRunFields, shared_field
from mentalese.methods.bolt.estep import EStepConfig
from mentalese.methods.bolt.synthesis import TeacherConfig

MODES = ("em", "teacher", "raw", "synthesize")


@dataclass
class BoltConfig(TrainRunFields):
    """A BoLT run: warm start on teacher thoughts, then `em_iterations` of E-step -> M-step -> eval."""

    # model and task: the shared fields of methods/base_config.py, with the paper's defaults (listed before
    # BoLT's own fields, where the base puts them)
    model_name_or_path: str = shared_field("model_name_or_path", "TinyLlama/TinyLlama_v1.1",
                                           note="the base model; paper: TinyLlama-1.1B")
    dtype: str = shared_field("dtype", "auto", note="paper: bf16")
    task: str = shared_field("task", "math", note="evaluated on; training reads `corpus`")

    mode: str = field(default="em", metadata={"help": "em: warm start + EM | teacher: warm start only | raw: "
                                                       "train on the raw corpus (baseline) | synthesize: only "
                                                       "write the teacher thoughts (cached)"})
    corpus: str = field(default="", metadata={"help": "JSONL with a 'text' field (and optional 'id'), or "
                                                        "'toy-chain' for the built-in toy corpus"})
    corpus_limit: int | None = field(default=None, metadata={"help": "first N documents only"})
    toy_options: dict = field(default_factory=dict, metadata={"help": "ToyCorpusConfig fields (corpus=toy-chain)"})
    chunk_mean_sentences: float = field(default=7.0, metadata={"help": "chunk length ~ Poisson(mean)+1 (paper: 7)"})
    chunk_max_sentences: int = field(default=20, metadata={"help": "chunk length cap in sentences (paper: 20)"})
    prior_probability: float = field(default=0.5, metadata={"help": "share of chunks in prior order (paper: 0.5)"})
    seq_len: int = field(default=2048, metadata={"help": "packed training sequence length (paper: 2048)"})
    teacher: TeacherConfig = field(default_factory=TeacherConfig, metadata={"help": "warm-start teacher"})
    teacher_docs: int | None = field(default=None, metadata={"help": "first N documents get teacher thoughts "
                                                                      "(None: all); the rest start raw"})
    warm_start_model: str | None = field(default=None, metadata={"help": "reuse this warm-start model dir "
                                                                          "instead of training one"})
    em_iterations: int = field(default=3, metadata={"help": "EM iterations after the warm start (paper: 3)"})
    restart_from_base: bool = field(default=True, metadata={"help": "each M-step starts from the base model "
                                                                     "(paper) instead of the previous iterate"})
    estep: EStepConfig = field(default_factory=EStepConfig, metadata={"help": "E-step settings"})
    eval_split: str = field(default="test", metadata={"help": "evaluation split"})
    eval_limit: int | None = field(default=None, metadata={"help": "first N evaluation problems"})
    eval_prompt: str = field(default="Problem: {question}\nSolution: ", metadata={
        "help": "prompt template; latent models get SOL <|prior|> appended (thought first)"})
    eval_few_shot: int = field(default=0, metadata={"help": "train-split examples prepended (paper: MATH 4, GSM8K 8)"})
    eval_max_new_tokens: int = field(default=1024, metadata={"help": "decode budget (thought + answer)"})
    eval_batch_size: int = field(default=32, metadata={"help": "decode batch"})

    def __post_init__(self) -> None:
        if isinstance(self.teacher, dict):
            self.teacher = TeacherConfig(**self.teacher)
        if isinstance(self.estep, dict):
            self.estep = EStepConfig(**self.estep)
        if self.mode not in MODES:
            raise MentaleseError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0 <= self.prior_probability <= 1:
            raise MentaleseError(f"prior_probability must be in [0, 1], got {self.prior_probability}")
        if self.seq_len < 16 or self.em_iterations < 0 or self.chunk_max_sentences < 1:
            raise MentaleseError("seq_len must be >= 16, em_iterations >= 0, chunk_max_sentences >= 1")
        if "{question}" not in self.eval_prompt:
            raise MentaleseError("eval_prompt must contain {question}")
        super().__post_init__()
