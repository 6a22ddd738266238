"""``python -m latentatlas.train`` = ``latentatlas train`` (kept importable without the CLI)."""
from ..cli import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *__import__("sys").argv[1:]]))
