"""The toy corpus: "compressed" arithmetic documents whose latent thoughts are the derivations.

A document is a few chain problems (tasks/synthetic.py) written as raw text that states only the
question and the result, one sentence each (a newline ends each answer line):

    Q: 7+5*3-4. The answer is: 2.
    Q: 3*3+1. The answer is: 0.

The true latent thought of an answer sentence is the question of the previous sentence restated,
then its derivation: `7+5*3-4: 7+5=2 2*3=6 6-4=2`; a question sentence's thought is empty. `derivation_teacher` writes
exactly these (the stand-in for a strong teacher), and `thought_is_correct` grades any thought.

Evaluation prompts: a latent model sees the question chunk in the layout its teacher documents
have in training (the empty thought in prior order, `SOL <|prior|> EOL Q: ... . `) followed by
`SOL <|prior|>` (`latent_eval_prompt`, applied by experiment.py); a raw model sees the plain
`Q: ... . ` (`raw_eval_prompt`). With the plain prompt a
warm start that had learned derivations in the training layout wrote empty thoughts (docs/LOG.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mentalese.errors import MentaleseError
from mentalese.methods.bolt.data_format import EOL, PRIOR, SOL
from mentalese.methods.bolt.synthesis import FunctionTeacher
from mentalese.tasks.synthetic import generate_chain

TOY_PROMPT = "{prefix}|{chunk}"  # what the derivation teacher parses
TOY_EVAL_PROMPT = "Q: {question}. "
EMPTY_PRIOR_THOUGHT = SOL + PRIOR + EOL  # a question chunk's (empty) thought, prior order
TOY_LATENT_EVAL_PROMPT = EMPTY_PRIOR_THOUGHT + TOY_EVAL_PROMPT  # what bolt-toy's latent variants get
_QUESTION = re.compile(r"Q: ([0-9+\-*]+)\. ")


@dataclass
class ToyCorpusConfig:
    documents: int = field(default=600, metadata={"help": "raw documents"})
    problems_per_document: int = field(default=2, metadata={"help": "chain problems per document"})
    num_steps: int = field(default=3, metadata={"help": "operations per problem"})
    modulus: int = field(default=10, metadata={"help": "number range"})
    seed: int = field(default=0, metadata={"help": "problem generator seed"})

    def __post_init__(self) -> None:
        if self.documents < 1 or self.problems_per_document < 1:
            raise MentaleseError("toy documents and problems_per_document must be >= 1")

    def task_options(self, n: int) -> dict:
        return {"num_steps": self.num_steps, "modulus": self.modulus, "num_examples": n, "seed": self.seed}


def toy_documents(cfg: ToyCorpusConfig) -> list[tuple[str, str]]:
    problems = generate_chain("train", **cfg.task_options(cfg.documents * cfg.problems_per_document))
    k = cfg.problems_per_document
    return [(f"toy{d}", "".join(f"Q: {p.question}. The answer is: {p.answer}.\n" for p in problems[d * k:(d + 1) * k]))
            for d in range(cfg.documents)]


def derivation(question: str, modulus: int = 10) -> str:
    """The left-to-right derivation of a chain question ("7+5*3" mod 10 -> "7+5=2 2*3=6")."""
    m = re.fullmatch(r"(\d+)((?:[+\-*]\d+)+)", question)
    if not m:
        raise MentaleseError(f"not a chain question: {question!r}")
    mod = modulus
    value, steps = int(m.group(1)), []
    for op, num in re.findall(r"([+\-*])(\d+)", m.group(2)):
        new = {"+": value + int(num), "-": value - int(num), "*": value * int(num)}[op] % mod
        steps.append(f"{value}{op}{num}={new}")
        value = new
    return " ".join(steps)


def toy_thought(question: str, modulus: int = 10) -> str:
    """The latent thought of an answer: the question restated, then its derivation
    ("7+5*3" -> "7+5*3: 7+5=2 2*3=6"). Restating first turns the hard part, fetching each operand and
    operator from the question sentence, into copying one span, and puts every operand at a fixed
    distance inside the thought (docs/LOG.md: without it the warm start never copied the operators)."""
    return f"{question}: {derivation(question, modulus)}"


def true_thought(prefix: str, chunk: str, modulus: int = 10) -> str:
    """The thought of an answer sentence (question read from the prefix); empty for anything else."""
    if not chunk.startswith("The answer is"):
        return ""
    questions = _QUESTION.findall(prefix)
    return toy_thought(questions[-1], modulus) if questions else ""


def derivation_teacher(modulus: int = 10) -> FunctionTeacher:
    def think(prompt: str) -> str:
        prefix, chunk = prompt.rsplit("|", 1)
        return true_thought(prefix, chunk, modulus)
    return FunctionTeacher(think, name="toy-derivation")


def thought_is_correct(question: str, thought: str, modulus: int = 10) -> bool:
    return thought.strip() == toy_thought(question, modulus)


def raw_eval_prompt(prompt: str) -> str:
    """The prompt for a raw-only model: `prompt` without the latent layout of the question chunk."""
    return prompt.replace(EMPTY_PRIOR_THOUGHT, "")


def latent_eval_prompt(prompt: str) -> str:
    """The prompt for a latent model: the question chunk with its empty thought in prior order."""
    return prompt if prompt.startswith(EMPTY_PRIOR_THOUGHT) else EMPTY_PRIOR_THOUGHT + prompt
