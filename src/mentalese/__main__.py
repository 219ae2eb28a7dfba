"""`python -m mentalese ...` (and `torchrun ... -m mentalese train ...`): the `mentalese` command."""

import sys

from mentalese.commands.cli import main

if __name__ == "__main__":
    sys.exit(main())
