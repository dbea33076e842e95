"""The rule language: YAML read with positions, checked by its schema, compiled into Rules."""
