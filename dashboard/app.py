"""The autopeft dashboard: a thin Streamlit entry wiring ``autopeft.dashboard.data`` to ``render``.

Started by ``autopeft dashboard`` (``autopeft.dashboard.launch``) as ``streamlit run
.../autopeft/dashboard/app.py -- --storage URL [--read-only]`` on the installed file. The
storage URL can also come from ``$AUTOPEFT_DASHBOARD_STORAGE`` / ``$AUTOPEFT_STORAGE``
(tests, ``streamlit run`` by hand). Every error a user can cause is shown as one message in the page, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import streamlit as st

# Absolute imports of the installed package: `streamlit run` executes this file as a script
# (with its own folder on sys.path), never as autopeft.dashboard.app.
from autopeft.dashboard import actions, data, importance_frames, render
from autopeft.errors import AutoPeftError
from autopeft.space import shipped_spaces

PAGES = ["Studies", "Pareto front", "Hypervolume", "Trials", "Importance", "Compare", "Export", "New search"]
#: The page's name in the URL (``?page=pareto&study=NAME``): short, and no space to escape.
SLUGS = {"Studies": "studies", "Pareto front": "pareto", "Hypervolume": "hypervolume", "Trials": "trials",
         "Importance": "importance", "Compare": "compare", "Export": "export", "New search": "new"}
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


# ---------------------------------------------------------------------- cached loading
@st.cache_resource(show_spinner=False)
def _store(url: str):
    return data.open_store(url, read_only=config()[1])  # a read-only dashboard never migrates a schema


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def _study_names(url: str) -> list[str]:
    return [s.name for s in _store(url).studies()]


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def _study(url: str, name: str) -> data.StudyData:
    return data.load_study(_store(url), name)


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def _trials_frame(url: str, name: str):
    sd = _study(url, name)
    return data.trials_frame(sd.study, sd.records)


@st.cache_data(show_spinner=False, max_entries=64)
def _export_files(url: str, name: str, number: int, how: str) -> dict[str, str]:
    # Keyed by trial: a finished trial's config never changes, and peft is slow to import.
    sd = _study(url, name)
    return actions.export_files(sd.study, data.trial(sd.records, number), how)


def _directions(sd: data.StudyData) -> dict[str, str]:
    return {n: d for n, d in sd.study.objectives} | {"trainable_params": "min", "number": "min"}


def _no_completed(sd: data.StudyData) -> None:
    counts = data.status_counts(sd.records)
    if counts["complete"]:  # completed, but every one diverged: nothing is on a front
        st.info(f"Every completed trial of study **{sd.study.name}** diverged ({counts['complete']}), so it has no "
                "front and no hypervolume; the Trials page says why for each.")
    elif not sd.records:
        st.info(f"Study **{sd.study.name}** has no trials yet. Start workers with "
                f"`autopeft search` on its YAML (or `autopeft worker`) and this page fills in.")
    else:
        detail = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        st.info(f"Study **{sd.study.name}** has no completed trial yet ({detail}); see the Trials page for errors.")


# ---------------------------------------------------------------------- pages
def page_studies(url: str, names: list[str]) -> None:
    st.header("Studies")
    frame = data.studies_frame([_study(url, n) for n in names])
    event = st.dataframe(render.table(frame), hide_index=True, on_select="rerun", selection_mode="single-row",
                         key="studies_table", placeholder="-")
    st.caption("Select a row to open the study's Pareto front.")
    rows = getattr(getattr(event, "selection", None), "rows", None) or []
    if rows:
        st.session_state["_goto"] = ("Pareto front", frame.iloc[rows[0]]["study"])
        st.rerun(scope="app")


def page_pareto(url: str, sd: data.StudyData) -> None:
    st.header(f"Pareto front - {sd.study.name}")
    frame = _trials_frame(url, sd.study.name)
    objectives = [n for n, _ in sd.study.objectives]
    if not (frame["status"] == "complete").any():
        return _no_completed(sd)
    axes = objectives if len(objectives) > 1 else ["trainable_params", *objectives]
    c1, c2, c3 = st.columns([2, 2, 1])
    # Cost on x, quality on y: how papers (and users) read an accuracy/parameters trade-off.
    x = c1.selectbox("x axis", axes, index=axes.index("trainable_params") if "trainable_params" in axes else 0,
                     key="pareto_x")
    y = c2.selectbox("y axis", [a for a in axes if a != x], key="pareto_y")
    z = None
    if len(objectives) == 3 and c3.toggle("3-D", value=True, key="pareto_3d"):
        z = next(a for a in objectives if a not in (x, y))
    points = data.pair_front(frame, x, y, _directions(sd), stopped=True)
    metrics = [*objectives, "learning_rate"]
    st.plotly_chart(render.pareto_figure(points, x, y, z=z, metrics=metrics), key="pareto_chart")
    front = frame[frame["pareto"]]
    stopped = points[points["rung_only"]]
    done = points[~points["rung_only"]]
    n_diverged = int((done["diverged"] != "").sum())
    st.caption(f"{len(front)} Pareto-optimal of {len(done)} completed trials (outlined); dominated trials faded"
               + (f"; {n_diverged} diverged (grey crosses), never on the front" if n_diverged else "")
               + (f"; {len(stopped)} stopped at a lower rung (hollow, at their rung's metric), never picked"
                  if len(stopped) else "") + ".")
    st.dataframe(render.table(front.drop(columns=["error", "pareto"])), hide_index=True, placeholder="-")
    view = data.verified_view(_store(url), sd.study, sd.records)
    if view is not None:
        vframe, fid, base = view
        st.subheader("Proxy vs verified")
        metric = next(n for n, _ in sd.study.objectives if n not in ("trainable_params", "peak_memory", "train_time"))
        if not vframe.empty:
            st.plotly_chart(render.verified_figure(vframe, metric, base), key="verified_chart")
        st.caption(fid.describe())
        if fid.advice:
            st.warning(fid.advice)
        if base is not None and base.diverged:
            st.warning(f"Default LoRA diverged ({base.diverged}) — not a comparison.")
        st.dataframe(render.table(vframe), hide_index=True, placeholder="-")


def page_hypervolume(url: str, sd: data.StudyData) -> None:
    from autopeft.search.analysis.hypervolume import hypervolume_report

    st.header(f"Hypervolume vs trials - {sd.study.name}")
    report = hypervolume_report(sd.records, sd.study.objectives)
    if report is None:
        return _no_completed(sd)
    names = [n for n, _ in sd.study.objectives]
    cols = st.columns(1 + len(names))
    cols[0].metric("hypervolume", f"{report.value:.4f}")
    for col, name, ref in zip(cols[1:], names, report.reference):
        col.metric(f"reference {name}", render.fmt3(ref))
    st.plotly_chart(render.hypervolume_figure(report.history, dict(zip(names, report.reference))), key="hv_chart")
    st.caption("Each objective is scaled to [0, 1] between the best value reached (ideal) and the reference "
               "point (worst completed value + 10% of the range), so 1.0 is a point at the ideal.")


def page_trials(url: str, sd: data.StudyData) -> None:
    st.header(f"Trials - {sd.study.name}")
    frame = _trials_frame(url, sd.study.name)
    if frame.empty:
        return _no_completed(sd)
    c1, c2, c3 = st.columns(3)
    states = c1.multiselect("state", sorted(frame["status"].unique()), key="filter_state")
    methods = c2.multiselect("method", sorted(frame["method"].unique()), key="filter_method")
    only_front = c3.toggle("Pareto-optimal only", key="filter_front")
    shown = frame
    if states:
        shown = shown[shown["status"].isin(states)]
    if methods:
        shown = shown[shown["method"].isin(methods)]
    if only_front:
        shown = shown[shown["pareto"]]
    # placeholder: the grid draws a missing value itself ("None" by default), whatever the Styler says
    st.dataframe(render.table(shown), hide_index=True, height=320, placeholder="-")
    st.caption(f"{len(shown)} of {len(frame)} trials; click a column header to sort.")
    if shown.empty:
        return st.info("No trial matches the filters.")
    numbers = shown["number"].tolist()
    # Open the first Pareto-optimal trial shown: the one a user most likely came to inspect.
    default = next((i for i, p in enumerate(shown["pareto"]) if p), 0)
    number = st.selectbox("Trial detail", numbers, index=default, key="trial_number")
    record = data.trial(sd.records, int(number))
    row = shown[shown["number"] == number].iloc[0].to_dict()
    curve = render.curve_figure(record.curve) if record.curve else None
    matrix = importance_frames.trial_importance(record)
    heat = render.importance_figure(matrix, f"Trial {record.number}: rank allocation") if matrix is not None else None
    render.show_trial(record, row, curve, heat)


def page_importance(url: str, sd: data.StudyData) -> None:
    st.header(f"Importance - {sd.study.name}")
    found = importance_frames.study_importance(sd.study, sd.records)
    if found is None:
        return st.info("No importance recorded for this study: it comes from the study's importance pass "
                       "(`importance:` in the space) or AdaLoRA's final rank allocation, so it appears once "
                       "either has run.")
    title, matrix = found
    st.plotly_chart(render.importance_figure(matrix, title), key="importance_study")
    with_maps = [r.number for r in sd.records if importance_frames.has_importance(r)]
    if with_maps:
        number = st.selectbox("Per-trial map", with_maps, key="importance_trial")
        st.plotly_chart(render.importance_figure(importance_frames.trial_importance(data.trial(sd.records, number)),
                                                 f"Trial {number}: rank allocation"), key="importance_one")


def page_compare(url: str, names: list[str], current: str) -> None:
    st.header("Compare studies")
    default = [current] + [n for n in names if n != current][:2]
    chosen = st.multiselect("Studies", names, default=default, key="compare_studies")
    if not chosen:
        return st.info("Pick one or more studies to overlay their fronts.")
    studies = {n: _study(url, n) for n in chosen}
    common = [o for o, _ in studies[chosen[0]].study.objectives
              if all(o in dict(s.study.objectives) for s in studies.values())]
    axes = common if len(common) > 1 else sorted(set(common) | {"trainable_params"})
    if len(axes) < 2:
        return st.warning("These studies share fewer than two objectives; pick studies with common objectives.")
    c1, c2 = st.columns(2)
    x = c1.selectbox("x axis", axes, index=axes.index("trainable_params") if "trainable_params" in axes else 0,
                     key="compare_x")
    y = c2.selectbox("y axis", [a for a in axes if a != x], key="compare_y")
    fronts, empty = {}, []
    for n, sd in studies.items():
        frame = _trials_frame(url, n)
        points = data.pair_front(frame, x, y, _directions(sd)) if x in frame and y in frame else frame.iloc[0:0]
        (fronts.__setitem__(n, points) if len(points) else empty.append(n))
    if empty:
        st.info(f"No completed trials yet in: {', '.join(empty)}")
    if fronts:
        st.plotly_chart(render.compare_figure(fronts, x, y), key="compare_chart")


def page_export(url: str, sd: data.StudyData, display_url: str) -> None:
    from autopeft.search.analysis.pareto import diverged, pick, trial_by_number

    st.header(f"Export - {sd.study.name}")
    done = [r.number for r in sd.records if r.status == "complete"]
    if not done:
        return _no_completed(sd)
    choices = ["knee", *[f"best:{n}" for n, _ in sd.study.objectives], "budget", "trial number"]
    how = st.radio("Pick", choices, horizontal=True, key="export_how")
    if how == "budget":
        how = "budget:" + st.text_input("Parameter budget (e.g. 50k, 1.2M)", value="50k", key="export_budget").strip()
    elif how == "trial number":
        how = f"trial:{st.selectbox('Trial', done, key='export_trial')}"
    try:
        record = (trial_by_number(sd.records, int(how.split(':')[1])) if how.startswith("trial:")
                  else pick(sd.study, sd.records, how))
        with st.spinner("Building adapter_config.json with peft (the first time loads torch) ..."):
            files = _export_files(url, sd.study.name, record.number, how)
    except AutoPeftError as e:
        return st.error(str(e))
    values = ", ".join(f"{n}={render.fmt3(v)}" for (n, _), v in zip(sd.study.objectives, record.values or []))
    st.success(f"Trial {record.number} ({record.candidate.get('method')}): {values}")
    if why := diverged(record):  # only a trial asked for by number: picks never land on one
        st.warning(f"Trial {record.number} diverged ({why}); it is never on the front.")
    main_file = actions.config_file(files)
    c1, c2 = st.columns(2)
    c1.download_button(f"Download {main_file}", files[main_file], file_name=main_file, mime="application/json",
                       key="export_download", type="primary")
    if "autopeft.json" in files and main_file != "autopeft.json":
        c2.download_button("Download autopeft.json (provenance)", files["autopeft.json"], file_name="autopeft.json",
                           mime="application/json", key="export_provenance")
    st.markdown("Equivalent command (writes both files):")
    st.code(actions.export_command(sd.study.name, display_url, how), language="bash")
    st.code(files[main_file], language="json")


def page_new_search(url: str, display_url: str) -> None:
    st.header("New search")
    st.caption("Paste or upload a search-space YAML, or start from a bundled one. Submitting creates the study "
               "in this database for workers to run; existing studies are never modified.")
    spaces = shipped_spaces()

    def use_template():
        st.session_state["space_yaml"] = spaces.get(st.session_state["space_template"], "")

    def use_upload():
        up = st.session_state.get("space_upload")
        if up is not None:
            st.session_state["space_yaml"] = up.getvalue().decode("utf-8", errors="replace")

    if "space_yaml" not in st.session_state:
        st.session_state["space_yaml"] = next(iter(spaces.values()), "")
    c1, c2 = st.columns(2)
    c1.selectbox("Start from", list(spaces) or ["(none bundled)"], key="space_template", on_change=use_template)
    c2.file_uploader("Upload YAML", type=["yaml", "yml"], key="space_upload", on_change=use_upload)
    text = st.text_area("Search space (YAML)", height=360, key="space_yaml")
    space, error = actions.validate_space(text)
    if error:
        st.error(error)
    else:
        st.success(f"Valid: study **{space.study}**, model {space.model.name}, {space.search.trials} trials, "
                   f"objectives {', '.join(f'{o.name} ({o.direction})' for o in space.objectives)}")
    if st.button("Create study", disabled=error is not None, type="primary", key="space_submit"):
        try:
            with st.spinner("Checking the space against its model and data ..."):
                record = actions.create_study(data.open_store(url, create=True), space)
        except AutoPeftError as e:
            return st.error(str(e))
        st.cache_data.clear()
        st.success(f"Created study **{record.name}** ({record.trials_target} trials). Run it with "
                   f"`autopeft worker --storage '{display_url}'` or `autopeft search SPACE.yaml --storage '{display_url}'`.")


# ---------------------------------------------------------------------- main
def main() -> None:
    from autopeft.store import mask_url

    st.set_page_config(page_title="autopeft dashboard", layout="wide")
    url, read_only = config()
    display_url = mask_url(url)
    pages = [p for p in PAGES if not (read_only and p == "New search")]
    goto = st.session_state.pop("_goto", None)
    if goto:  # set before the widgets exist: Streamlit forbids changing a widget's state after
        st.session_state["page"], st.session_state["study"] = goto
    elif "page" not in st.session_state:  # a new session: open the page the URL names
        st.session_state["page"] = page_from_url(st.query_params.get("page"), pages)
    if st.session_state["page"] not in pages:
        st.session_state["page"] = pages[0]

    st.sidebar.title("autopeft")
    st.sidebar.caption(f"database: `{display_url}`" + (" (read-only)" if read_only else ""))
    page = st.sidebar.radio("Page", pages, key="page")

    try:
        names = _study_names(url)
    except AutoPeftError as e:
        _set_url(page)
        if page == "New search":
            return page_new_search(url, display_url)
        st.error(f"Cannot open the database: {e}")
        st.info("Check `--storage` (e.g. sqlite:///autopeft.db or postgresql+psycopg://user:pass@host/db).")
        return
    if page == "New search":
        _set_url(page)
        return page_new_search(url, display_url)
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
    running = any(r.status == "running" for r in _study(url, study).records)
    live = st.sidebar.toggle("Live refresh", value=running, key="live")
    interval = st.sidebar.number_input("Refresh every (s)", min_value=2, max_value=600, value=5, key="interval",
                                       disabled=not live)
    if st.sidebar.button("Reload now", key="reload"):
        st.cache_data.clear()

    def body() -> None:
        with _guard():
            dispatch()

    def dispatch() -> None:
        sd = _study(url, study)
        if page == "Studies":
            page_studies(url, names)
        elif page == "Pareto front":
            page_pareto(url, sd)
        elif page == "Hypervolume":
            page_hypervolume(url, sd)
        elif page == "Trials":
            page_trials(url, sd)
        elif page == "Importance":
            page_importance(url, sd)
        elif page == "Compare":
            page_compare(url, names, study)
        elif page == "Export":
            page_export(url, sd, display_url)

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
