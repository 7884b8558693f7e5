"""The autopeft Streamlit dashboard: ``data`` loads, ``render`` draws, ``app`` wires them.

Start it with ``autopeft dashboard`` (see ``autopeft.dashboard.launch``).
"""
