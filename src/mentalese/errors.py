"""One exception type for bad user input, so the CLI can print it as one line."""


class MentaleseError(ValueError):
    """Bad input (data rows, config values, benchmark names, tokenizers). The message names the problem."""
