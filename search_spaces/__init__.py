"""The search spaces shipped with autopeft, as package data (installed as ``autopeft.search_spaces``).

Read them with ``autopeft.space.shipped_spaces()``; each YAML here runs as shipped.
"""
