"""CLI commands for many workers sharing one database: ``worker`` and ``db``."""
