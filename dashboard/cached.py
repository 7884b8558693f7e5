"""Where the dashboard reads from and how long it keeps what it read: the storage URL it was
started with, the store opened once per URL, and the studies, trial frames and export files,
cached for ``CACHE_TTL`` seconds so live refresh shows new trials from workers.
"""

from __future__ import annotations

import argparse
import os
import sys

import streamlit as st

from autopeft.dashboard import actions, data

CACHE_TTL = 2  # seconds: short, so live refresh and new trials from workers show up


def config() -> tuple[str, bool]:
    """``(storage URL, read_only)`` from argv (after ``--``) or the environment."""
    from autopeft.store import storage_url

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--storage")
    parser.add_argument("--read-only", action="store_true")
    args, _ = parser.parse_known_args(sys.argv[1:])
    # First the URL `autopeft dashboard` was given (launch passes it in this variable, off argv), then the one
    # every command reads.
    url = storage_url(args.storage, env=("AUTOPEFT_DASHBOARD_STORAGE", "AUTOPEFT_STORAGE"))
    read_only = args.read_only or os.environ.get("AUTOPEFT_DASHBOARD_READ_ONLY", "") not in ("", "0")
    return url, read_only


@st.cache_resource(show_spinner=False)
def store(url: str):
    return data.open_store(url, read_only=config()[1])  # a read-only dashboard never migrates a schema


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def study_names(url: str) -> list[str]:
    return [s.name for s in store(url).studies()]


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def study(url: str, name: str) -> data.StudyData:
    return data.load_study(store(url), name)


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def trials_frame(url: str, name: str):
    sd = study(url, name)
    return data.trials_frame(sd.study, sd.records)


@st.cache_data(show_spinner=False, max_entries=64)
def export_files(url: str, name: str, number: int, how: str) -> dict[str, str]:
    # Keyed by trial: a finished trial's config never changes, and peft is slow to import.
    sd = study(url, name)
    return actions.export_files(sd.study, data.trial(sd.records, number), how)
