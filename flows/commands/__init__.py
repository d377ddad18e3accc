"""The application layer: one module per `vitalflow` command, given the settings the CLI read."""
