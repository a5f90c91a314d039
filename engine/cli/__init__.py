"""insid3.engine.cli: the command line: the `insid3` command and its verbs (argparse lives here and nowhere else)."""
