"""Models and data sets: bundled aliases, local paths and hub ids, resolved the same way."""
