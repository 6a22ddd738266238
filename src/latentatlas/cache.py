"""Where latentatlas keeps what it computes once per model or data set (atlases, encoders,
reference features, mean protoimages): ``$XDG_CACHE_HOME/latentatlas``, default
``~/.cache/latentatlas``."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "latentatlas"
