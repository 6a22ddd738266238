"""``python -m latentatlas.cli ARGS`` = ``latentatlas ARGS``."""
import sys

from .main import main

sys.exit(main())
