"""`python -m registry.ci_check`: the Avro compatibility gate run by `make lint` (tools/lint.py).

Loads the schemas of the last landed commit (see `registry.cli.default_base`) into a
throwaway in-memory registry and checks the working tree's schemas against them at
REGISTRY_CHECK_LEVEL (default BACKWARD). Skips, saying so, when the base has no schemas.
"""

from __future__ import annotations

import os
import sys

from registry.cli import main

if __name__ == "__main__":
    level = os.environ.get("REGISTRY_CHECK_LEVEL", "BACKWARD")
    sys.exit(main(["check-against-git", "--level", level, *sys.argv[1:]]))
