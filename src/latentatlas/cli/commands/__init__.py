"""One module per command family, each with ``add_COMMAND(sub, common)`` (its parser) and
``run_COMMAND(args)`` (what it runs); ``cli.main.PARSERS`` lists them in the help's order."""
