"""The package version: its own module, so that the package root and the modules that record
the version (a study stores the autopeft that created it) read it without importing each other."""

__version__ = "0.1.0"
