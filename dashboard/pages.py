"""The dashboard's pages, one function each: what a page asks (its widgets) and shows (tables
and figures from ``autopeft.dashboard.render``), reading through ``autopeft.dashboard.cached``.
``autopeft.dashboard.app`` picks the page.
"""

from __future__ import annotations

import streamlit as st

from autopeft.dashboard import actions, cached, data, importance_frames, render
from autopeft.errors import AutoPeftError
from autopeft.space import shipped_spaces


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
    frame = data.studies_frame([cached.study(url, n) for n in names])
    event = st.dataframe(render.table(frame), hide_index=True, on_select="rerun", selection_mode="single-row",
                         key="studies_table", placeholder="-")
    st.caption("Select a row to open the study's Pareto front.")
    rows = getattr(getattr(event, "selection", None), "rows", None) or []
    if rows:
        st.session_state["_goto"] = ("Pareto front", frame.iloc[rows[0]]["study"])
        st.rerun(scope="app")


def page_pareto(url: str, sd: data.StudyData) -> None:
    st.header(f"Pareto front - {sd.study.name}")
    frame = cached.trials_frame(url, sd.study.name)
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
    view = data.verified_view(cached.store(url), sd.study, sd.records)
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
    frame = cached.trials_frame(url, sd.study.name)
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
    studies = {n: cached.study(url, n) for n in chosen}
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
        frame = cached.trials_frame(url, n)
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
            files = cached.export_files(url, sd.study.name, record.number, how)
    except AutoPeftError as e:
        return st.error(str(e))
    values = ", ".join(f"{n}={render.fmt3(v)}" for (n, _), v in zip(sd.study.objectives, record.values or []))
    st.success(f"Trial {record.number} ({record.candidate.method}): {values}")
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
