"""The `crmd` command: one module per command family, thin: parse, call, print."""
