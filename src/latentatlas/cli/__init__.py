"""The command line: ``cli.main`` (the parser and the error handling), ``cli.options`` (what the
commands share) and ``cli.commands`` (one module per command family)."""
