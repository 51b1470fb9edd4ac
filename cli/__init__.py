"""The `venue` command line: subcommand wiring (`cli.main`), how `venue serve` assembles a
running venue (`cli.serve`), and what every command shares: failure messages, logs and
progress bars.
"""
