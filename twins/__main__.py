"""``python -m twins`` (what ``torchrun ... -m twins train CONFIG`` runs)."""

import sys

from twins.cli import main

sys.exit(main())
