"""Evaluation: answer extraction, grading and aggregate metrics (pure functions, no model code)."""

from mentalese.evaluation.extraction import (
    EXTRACTION_VERSION,
    STRICT_EXTRACTORS,
    extract,
    extract_answer_is,
    extract_boxed,
    extract_hash,
    extract_last_number,
    extract_text,
)
from mentalese.evaluation.grading import (
    GRADER_VERSION,
    GRADERS,
    exact_equal,
    grade,
    math_verify_equal,
    numbers_equal,
    parse_number,
)
from mentalese.evaluation.metrics import (
    majority_vote,
    mean_pass_at_k,
    normalise_number,
    pass_at_k,
    summarise_latencies,
)

__all__ = [
    "EXTRACTION_VERSION",
    "GRADER_VERSION",
    "GRADERS",
    "STRICT_EXTRACTORS",
    "exact_equal",
    "extract",
    "extract_answer_is",
    "extract_boxed",
    "extract_hash",
    "extract_last_number",
    "extract_text",
    "grade",
    "majority_vote",
    "math_verify_equal",
    "mean_pass_at_k",
    "normalise_number",
    "numbers_equal",
    "parse_number",
    "pass_at_k",
    "summarise_latencies",
]
