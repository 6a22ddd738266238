"""Stored protocol runs: the figures a long protocol measured on a model (Diamond's Table 1 at
N = 10,000, the II2S inversion protocol at n = 100), kept by the model's weights hash so that a
report on the same weights shows the protocol's verdict beside its own quick measurement.

A record is one JSON file ``<weights hash>-<protocol>.json``: ``protocol``, ``model``,
``weights_hash``, ``n`` and the protocol's reduced figures (the intervals the claims read, never
per-sample data). Records are written to the cache by the commands that run a protocol, and read
from there and from ``latentatlas/weights/protocols`` (the runs shipped with the bundled models).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ..cache import cache_dir
from ..imageio import atomic_path

log = logging.getLogger("latentatlas")

SHIPPED = Path(__file__).resolve().parent.parent / "weights" / "protocols"
MAX_RECORD_BYTES = 4 << 20          # a record holds reduced figures only; anything larger is not one of ours


def store_dirs() -> list[Path]:
    """Where records are looked up, in order: the shipped runs, then the cache (newer wins)."""
    return [SHIPPED, cache_dir() / "protocols"]


def save_record(model, protocol: str, record: dict, directory: Path | None = None) -> Path:
    """Write ``record`` for ``model``'s weights (to the cache unless ``directory`` is given)."""
    directory = Path(directory) if directory else cache_dir() / "protocols"
    path = directory / f"{model.weights_hash()}-{protocol}.json"
    full = {"protocol": protocol, "model": model.name, "weights_hash": model.weights_hash(), **record}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(full, indent=1, default=float))
    log.info("stored the %s run of %s (weights %s) in %s", protocol, model.name, model.weights_hash(), path)
    return path


def load_records(model) -> dict[str, dict]:
    """Every stored protocol record of ``model``'s weights, by protocol name. A record that cannot
    be read is skipped with a warning (a stale cache never stops a report)."""
    out = {}
    for d in store_dirs():
        for path in sorted(d.glob(f"{model.weights_hash()}-*.json")) if d.is_dir() else []:
            try:
                if path.stat().st_size > MAX_RECORD_BYTES:
                    raise ValueError(f"{path.stat().st_size} bytes")
                rec = json.loads(path.read_text())
                if not isinstance(rec, dict) or rec.get("weights_hash") != model.weights_hash():
                    raise ValueError("not a protocol record of these weights")
                out[str(rec["protocol"])] = {**rec, "path": str(path)}
            except (OSError, ValueError, KeyError) as e:
                log.warning("skipped the stored protocol run %s: %s", path, e)
    return out
