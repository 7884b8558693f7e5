"""The autopeft dashboard: a thin Streamlit entry that picks the page (``autopeft.dashboard.pages``)
from the sidebar or the URL, reads through ``autopeft.dashboard.cached`` and keeps errors in the page.

Started by ``autopeft dashboard`` (``autopeft.dashboard.launch``) as ``streamlit run
.../autopeft/dashboard/app.py -- --storage URL [--read-only]`` on the installed file. The
storage URL can also come from ``$AUTOPEFT_DASHBOARD_STORAGE`` / ``$AUTOPEFT_STORAGE``
(tests, ``streamlit run`` by hand). Every error a user can cause is shown as one message in the page, never a traceback.
"""

from __future__ import annotations

import contextlib

import streamlit as st

# Absolute imports of the installed package: `streamlit run` executes this file as a script
# (with its own folder on sys.path), never as autopeft.dashboard.app.
from autopeft.dashboard import cached, pages
from autopeft.errors import AutoPeftError

PAGES = ["Studies", "Pareto front", "Hypervolume", "Trials", "Importance", "Compare", "Export", "New search"]
#: The page's name in the URL (``?page=pareto&study=NAME``): short, and no space to escape.
SLUGS = {"Studies": "studies", "Pareto front": "pareto", "Hypervolume": "hypervolume", "Trials": "trials",
         "Importance": "importance", "Compare": "compare", "Export": "export", "New search": "new"}


def main() -> None:
    from autopeft.store import mask_url

    st.set_page_config(page_title="autopeft dashboard", layout="wide")
    url, read_only = cached.config()
    display_url = mask_url(url)
    offered = [p for p in PAGES if not (read_only and p == "New search")]
    goto = st.session_state.pop("_goto", None)
    if goto:  # set before the widgets exist: Streamlit forbids changing a widget's state after
        st.session_state["page"], st.session_state["study"] = goto
    elif "page" not in st.session_state:  # a new session: open the page the URL names
        st.session_state["page"] = page_from_url(st.query_params.get("page"), offered)
    if st.session_state["page"] not in offered:
        st.session_state["page"] = offered[0]

    st.sidebar.title("autopeft")
    st.sidebar.caption(f"database: `{display_url}`" + (" (read-only)" if read_only else ""))
    page = st.sidebar.radio("Page", offered, key="page")

    try:
        names = cached.study_names(url)
    except AutoPeftError as e:
        _set_url(page)
        if page == "New search":
            return pages.page_new_search(url, display_url)
        st.error(f"Cannot open the database: {e}")
        st.info("Check `--storage` (e.g. sqlite:///autopeft.db or postgresql+psycopg://user:pass@host/db).")
        return
    if page == "New search":
        _set_url(page)
        return pages.page_new_search(url, display_url)
    if not names:
        _set_url(page)
        st.info(f"No studies in {display_url} yet. Run `autopeft search SPACE.yaml --storage '{display_url}'`"
                + ("" if read_only else " or create one on the New search page") + ".")
        return

    if st.session_state.get("study") not in names:
        wanted = st.query_params.get("study")
        st.session_state["study"] = wanted if wanted in names else names[-1]
    study = st.sidebar.selectbox("Study", names, key="study")
    _set_url(page, study)
    # Live by default while the study has a running trial (a search or workers are at it).
    running = any(r.status == "running" for r in cached.study(url, study).records)
    live = st.sidebar.toggle("Live refresh", value=running, key="live")
    interval = st.sidebar.number_input("Refresh every (s)", min_value=2, max_value=600, value=5, key="interval",
                                       disabled=not live)
    if st.sidebar.button("Reload now", key="reload"):
        st.cache_data.clear()

    def body() -> None:
        with _guard():
            dispatch()

    def dispatch() -> None:
        sd = cached.study(url, study)
        if page == "Studies":
            pages.page_studies(url, names)
        elif page == "Pareto front":
            pages.page_pareto(url, sd)
        elif page == "Hypervolume":
            pages.page_hypervolume(url, sd)
        elif page == "Trials":
            pages.page_trials(url, sd)
        elif page == "Importance":
            pages.page_importance(url, sd)
        elif page == "Compare":
            pages.page_compare(url, names, study)
        elif page == "Export":
            pages.page_export(url, sd, display_url)

    # A fragment re-runs only the page body on a timer; the sidebar keeps its state.
    (st.fragment(run_every=interval)(body) if live else body)()


def page_from_url(value: str | None, pages: list[str]) -> str:
    """The page ``?page=`` names: a slug (``pareto``) or a page's title (``Pareto front``);
    anything else opens the first page."""
    if not value:
        return pages[0]
    by_slug = {SLUGS[p]: p for p in pages}
    wanted = by_slug.get(value.strip().lower()) or next((p for p in pages if p.lower() == value.strip().lower()), None)
    return wanted or pages[0]


def _set_url(page: str, study: str | None = None) -> None:
    """Write where the user is into the URL, so it can be bookmarked, shared or reloaded."""
    wanted = {"page": SLUGS[page], **({"study": study} if study else {})}
    current = {k: st.query_params.get(k) for k in ("page", "study")}
    if {k: v for k, v in current.items() if v is not None} != wanted:  # unchanged: leave the history alone
        st.query_params.from_dict(wanted)


@contextlib.contextmanager
def _guard():
    """Turn any error into one message in the page (also inside live-refresh fragments)."""
    try:
        yield
    except AutoPeftError as e:
        st.error(str(e))
    except Exception as e:  # noqa: BLE001 - a dashboard shows a message, never a traceback
        if type(e).__module__.startswith("streamlit"):  # rerun/stop control flow must propagate
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        st.error(f"Unexpected error ({type(e).__name__}): {first}. Please report it with the steps that led here.")


with _guard():
    main()
