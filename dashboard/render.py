"""Render functions: data in, plotly figures or Streamlit elements out. No decisions here.

Figures are built by pure ``*_figure`` functions (testable without Streamlit); the
``show_*`` functions only place prepared data on the page.
"""

from __future__ import annotations

from typing import Sequence

# One colour per PEFT method, stable across pages and studies (plotly's qualitative set).
_PALETTE = ["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880"]
_HOVER_COLUMNS = ("number", "method", "rank", "layers", "targets", "trainable_params")


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """A stable colour for each method name (sorted, so every page agrees)."""
    return {m: _PALETTE[i % len(_PALETTE)] for i, m in enumerate(sorted(set(methods)))}


def fmt3(v) -> str:
    """A number for reading: 3 significant digits (``0.000312``, ``0.612``, ``12.3``), whole
    numbers from 1,000 up with separators (``12,288``: no exponent for a count), '-' for none."""
    import math
    import numbers

    if v is None or isinstance(v, bool):
        return "-" if v is None else str(v)
    if isinstance(v, numbers.Integral):
        return f"{int(v):,}"
    if isinstance(v, numbers.Real):
        v = float(v)
        if math.isnan(v):
            return "-"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    try:
        import pandas as pd

        if pd.isna(v):  # pd.NA, NaT
            return "-"
    except (TypeError, ValueError):  # lists and other values pandas cannot test
        pass
    return str(v)


def _count(v) -> str:
    text = fmt3(v)
    return f"{float(v):,.0f}" if text not in ("-",) and isinstance(v, float) else text


#: Columns that count things (thousands separators, never 3 significant digits).
_COUNT_COLUMNS = ("trainable_params", "best trainable_params", "target", "front")


def table(frame):
    """``frame`` for ``st.dataframe``, formatted for reading: floats (learning rates, metrics,
    times) to 3 significant digits, counts with separators, '-' where a field does not apply.

    A pandas ``Styler``: only the display changes, the values stay numbers, so a click on a
    column header still sorts 1e-4 below 2e-3.
    """
    import pandas as pd

    formats = {}
    for col in frame.columns:
        if col in _COUNT_COLUMNS:
            formats[col] = _count
        elif pd.api.types.is_float_dtype(frame[col]) or pd.api.types.is_integer_dtype(frame[col]):
            formats[col] = fmt3
        elif pd.api.types.is_datetime64_any_dtype(frame[col]):
            formats[col] = lambda v: "-" if pd.isna(v) else f"{v:%Y-%m-%d %H:%M}"
    if "number" in frame.columns:
        formats["number"] = str  # a trial number is a name, not a quantity
    return frame.style.format(formats, na_rep="-")


def _hover(frame, metrics: Sequence[str]):
    cols = [c for c in _HOVER_COLUMNS if c in frame.columns] + [m for m in metrics if m in frame.columns]
    custom = frame[cols].astype(object).map(fmt3).to_numpy()
    lines = ["<b>trial %{customdata[0]}</b>"] + [f"{c}: %{{customdata[{i}]}}" for i, c in enumerate(cols) if i]
    return custom, "<br>".join(lines) + "<extra></extra>"


def pareto_figure(points, x: str, y: str, *, z: str | None = None, metrics: Sequence[str] = (), title: str = ""):
    """Scatter of completed trials on objectives x, y (and z for 3-D).

    Args:
        points: Completed-trial rows with the objective columns, ``method``, ``front_xy``
            (non-dominated on the shown pair) and ``pareto`` (non-dominated on all
            objectives), ``baseline`` (default LoRA), ``diverged`` (why a trial counts as
            diverged, "" otherwise): diverged trials are drawn apart, as grey crosses, never
            as front or dominated points of their method; ``rung_only`` (optional): trials
            stopped at a lower rung, drawn as hollow circles of their method at their rung's
            metric, never on the front.
        metrics: Extra columns for the hover label.
    """
    import pandas as pd
    import plotly.graph_objects as go

    fig = go.Figure()
    is_diverged = (points["diverged"].fillna("") != "") if "diverged" in points else pd.Series(False, index=points.index)
    rung_only = points["rung_only"].astype(bool) if "rung_only" in points else pd.Series(False, index=points.index)
    stopped = points[rung_only]  # a pruned trial is never judged diverged (pareto.diverged)
    healthy, collapsed = points[~is_diverged & ~rung_only], points[is_diverged]
    colours = method_colours(points["method"]) if len(points) else {}
    front_col = "pareto" if z else "front_xy"
    for method, colour in colours.items():
        for on_front in (False, True):
            part = healthy[(healthy["method"] == method) & (healthy[front_col] == on_front)]
            if part.empty:
                continue
            custom, template = _hover(part, metrics)
            # Dominated points are faded so the front reads first; front points get an outline.
            marker = dict(color=colour, size=10 if on_front else 7, opacity=1.0 if on_front else 0.3,
                          line=dict(width=1.5 if on_front else 0, color="black"))
            name = f"{method} ({'front' if on_front else 'dominated'})"
            if z:
                fig.add_trace(go.Scatter3d(x=part[x], y=part[y], z=part[z], mode="markers", name=name,
                                           marker={**marker, "size": marker["size"] * 0.6},
                                           customdata=custom, hovertemplate=template))
            else:
                fig.add_trace(go.Scattergl(x=part[x], y=part[y], mode="markers", name=name, marker=marker,
                                           customdata=custom, hovertemplate=template))
    for method, colour in colours.items():
        part = stopped[stopped["method"] == method]
        if part.empty:
            continue
        custom, template = _hover(part, [*metrics, "fidelity"])
        marker = dict(symbol="circle-open", color=colour, size=7, opacity=0.6)
        name = f"{method} (stopped at a rung)"
        if z:
            fig.add_trace(go.Scatter3d(x=part[x], y=part[y], z=part[z], mode="markers", name=name,
                                       marker={**marker, "size": 4}, customdata=custom, hovertemplate=template))
        else:
            fig.add_trace(go.Scattergl(x=part[x], y=part[y], mode="markers", name=name, marker=marker,
                                       customdata=custom, hovertemplate=template))
    if len(collapsed):
        custom, template = _hover(collapsed, [*metrics, "diverged"])
        marker = dict(symbol="x", color="#888888", size=8, opacity=0.8)
        if z:
            fig.add_trace(go.Scatter3d(x=collapsed[x], y=collapsed[y], z=collapsed[z], mode="markers", name="diverged",
                                       marker={**marker, "size": 5}, customdata=custom,
                                       hovertemplate=template))
        else:
            fig.add_trace(go.Scattergl(x=collapsed[x], y=collapsed[y], mode="markers", name="diverged", marker=marker,
                                       customdata=custom, hovertemplate=template))
    if not z and len(points):
        front = points[points["front_xy"]].sort_values([x, y])
        fig.add_trace(go.Scatter(x=front[x], y=front[y], mode="lines", name="Pareto front",
                                 line=dict(color="black", width=1.5, shape="hv"), hoverinfo="skip"))
        base = points[(points.get("baseline", False) == True) & ~rung_only]  # noqa: E712 - a pandas mask
        if len(base):
            gone = bool(is_diverged[base.index].all())
            fig.add_trace(go.Scatter(x=base[x], y=base[y], mode="markers",
                                     name="default LoRA (r=8, q/v, all layers)" + (" (diverged)" if gone else ""),
                                     marker=dict(symbol="star", size=16, color="gold", line=dict(width=1, color="black"))))
    layout = dict(title=title, legend_title_text="method", height=560, margin=dict(l=10, r=10, t=40, b=10))
    if z:
        layout["scene"] = dict(xaxis_title=x, yaxis_title=y, zaxis_title=z)
    else:
        layout.update(xaxis_title=x, yaxis_title=y)
        if "trainable_params" in (x, y):
            layout["xaxis_type" if x == "trainable_params" else "yaxis_type"] = "log"
    fig.update_layout(**layout)
    return fig


def hypervolume_figure(history: Sequence[tuple[int, float]], reference: dict[str, float]):
    """Normalised hypervolume after each finished trial; the reference point in the title."""
    import plotly.graph_objects as go

    ref = ", ".join(f"{k}={fmt3(v)}" for k, v in reference.items())
    fig = go.Figure(go.Scatter(x=[n for n, _ in history], y=[v for _, v in history], mode="lines+markers",
                               line=dict(shape="hv"), marker=dict(size=4), name="hypervolume"))
    fig.update_layout(title=f"Hypervolume vs trials (reference point: {ref})", xaxis_title="trial number",
                      yaxis_title="normalised hypervolume", yaxis_range=[0, 1.02], height=420,
                      margin=dict(l=10, r=10, t=50, b=10))
    return fig


def curve_figure(curve: Sequence[Sequence[float]]):
    """Training loss against step."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[p[0] for p in curve], y=[p[1] for p in curve], mode="lines+markers"))
    fig.update_layout(title="Learning curve", xaxis_title="step", yaxis_title="training loss", height=320,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def importance_figure(matrix, title: str = "Importance (layer x module)"):
    """Heatmap of a layer x module DataFrame (AdaLoRA ranks, SPT sensitivity ...); blank = not measured."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(z=matrix.to_numpy(dtype=float), x=[str(c) for c in matrix.columns],
                               y=[str(i) for i in matrix.index], colorscale="Viridis", colorbar=dict(title="importance"),
                               hovertemplate="layer %{y}, %{x}: %{z:.2f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="module", yaxis_title="layer", height=420,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def compare_figure(fronts: dict[str, object], x: str, y: str):
    """Overlay of several studies' fronts on objectives x, y (each a line of front points)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (name, points) in enumerate(fronts.items()):
        colour = _PALETTE[i % len(_PALETTE)]
        dominated, front = points[~points["front_xy"]], points[points["front_xy"]].sort_values([x, y])
        fig.add_trace(go.Scattergl(x=dominated[x], y=dominated[y], mode="markers", name=f"{name} (dominated)",
                                   marker=dict(color=colour, size=5, opacity=0.2), legendgroup=name))
        fig.add_trace(go.Scatter(x=front[x], y=front[y], mode="lines+markers", name=name, legendgroup=name,
                                 line=dict(color=colour, shape="hv"), marker=dict(color=colour, size=9),
                                 customdata=front[["number"]].to_numpy(),
                                 hovertemplate=f"{name} trial %{{customdata[0]}}<extra></extra>"))
    fig.update_layout(xaxis_title=x, yaxis_title=y, height=520, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis_type="log" if x == "trainable_params" else None,
                      yaxis_type="log" if y == "trainable_params" else None)
    return fig


# ---------------------------------------------------------------------- page pieces
def show_trial(record, trial_row: dict, curve_fig, importance_fig) -> None:
    """A trial's detail: summary metrics, error, candidate and peft config beside the curve."""
    import streamlit as st

    st.subheader(f"Trial {record.number} - {record.status}")
    summary = {"method": trial_row.get("method"), "trainable params": fmt3(record.trainable_params)}
    summary.update({k: fmt3(v) for k, v in (record.metrics or {}).items()})
    summary.update({"wall time (s)": fmt3(record.resources.wall_time), "peak memory (MiB)": fmt3(record.peak_memory_mib)})
    for col, (label, value) in zip(st.columns(len(summary)), summary.items()):
        col.metric(label, str(value))
    if record.error:
        st.error(f"{record.status}: {record.error}")
    left, right = st.columns([2, 3])
    with left:
        st.markdown("**Candidate**")
        st.json(record.candidate.to_json(), expanded=1)  # one level: nested lists (layers) stay folded
        st.markdown("**peft config**")
        if record.peft_config is None:
            st.info("no peft config (the candidate could not be built)")
        else:
            st.json(record.peft_config, expanded=1)
    with right:
        if curve_fig is not None:
            st.plotly_chart(curve_fig, key=f"curve-{record.number}")
        else:
            st.info("no learning curve recorded for this trial")
        if importance_fig is not None:
            st.plotly_chart(importance_fig, key=f"importance-{record.number}")
    st.caption(f"started {record.started_at}, finished {record.finished_at or '-'}, "
               f"train time {fmt3(record.resources.train_time)} s, sampler time {fmt3(record.sampler_time)} s")


def verified_figure(frame, metric: str, baseline=None):
    """Proxy vs verified, side by side: each verified point at its proxy value (open) and at its
    verified test mean ± sd (filled), joined by a line; default LoRA as a star when verified."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for _, row in frame.iterrows():
        fig.add_trace(go.Scatter(x=[row["trainable_params"]] * 2, y=[row["proxy"], row["test"]], mode="lines",
                                 line={"color": "#bbbbbb", "width": 1}, showlegend=False, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=frame["trainable_params"], y=frame["proxy"], mode="markers", name="proxy (one run)",
                             marker={"symbol": "circle-open", "size": 10},
                             text=[f"trial {n}" for n in frame["number"]]))
    fig.add_trace(go.Scatter(x=frame["trainable_params"], y=frame["test"], mode="markers",
                             name="verified test mean ± sd", error_y={"type": "data", "array": frame["test_sd"]},
                             marker={"size": 10}, text=[f"trial {n}" for n in frame["number"]]))
    if baseline is not None:
        fig.add_trace(go.Scatter(x=[baseline.trainable_params], y=[baseline.test[0]], mode="markers",
                                 name="default LoRA" + (" (diverged)" if baseline.diverged else ""),
                                 error_y={"type": "data", "array": [baseline.test[1]]},
                                 marker={"symbol": "star", "size": 14}))
    fig.update_layout(xaxis={"title": "trainable parameters", "type": "log"}, yaxis={"title": metric},
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h"})
    return fig
