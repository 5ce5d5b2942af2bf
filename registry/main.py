"""`python -m registry.main`: run the registry service configured from REGISTRY_* env vars.

The stack (stack/components.py) starts this module; `python -m registry serve` is the same.
"""

from __future__ import annotations

import sys

from registry.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
