"""`mentalese-lm-eval`: lm-eval's command line with `--model mentalese` registered (mentalese/lm_eval_backend.py).
Without lm-eval installed, and on our own errors (bad model_args, ...), it says so in one line, not a traceback."""

from __future__ import annotations

import importlib.util
import sys

INSTALL_HINT = ("mentalese-lm-eval needs lm-evaluation-harness, which is not installed: "
                "pip install 'mentalese[lm-eval]' (tested with lm-eval 0.4.13)")


def main() -> None:
    if importlib.util.find_spec("lm_eval") is None:
        print(f"error: {INSTALL_HINT}", file=sys.stderr)
        raise SystemExit(2)
    from mentalese.errors import MentaleseError
    from mentalese.lm_eval_backend import main as run

    try:
        run()
    except MentaleseError as e:  # bad model_args, a strategy without likelihoods, ...: one line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
