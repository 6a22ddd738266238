"""The one exception type the CLI turns into a single clear line (exit code 2)."""


class LatentAtlasError(Exception):
    """A user-facing problem: bad input, missing file, unknown name. The message is one line
    that names the thing and the problem."""
