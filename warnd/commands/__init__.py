"""The `warnd` subcommand groups, one module each; `warnd.cli` puts them together."""
