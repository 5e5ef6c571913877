"""One module per subcommand; see ``textbackd/cli.py`` for the contract."""
