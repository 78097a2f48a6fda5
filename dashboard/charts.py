"""Chart builders: pure functions from frames to ``alt.Chart``, tested through ``to_dict()``; and ``show``,
which draws one on a page with its spec cached."""

from __future__ import annotations

import functools
from typing import Callable

import altair as alt
import pandas as pd
import streamlit as st

from core import catalogue
from dashboard import fmt

def names_axis(**kwargs) -> alt.Axis:
    """An axis of names (judges, attributes, models): every label drawn, none cut short (Vega's
    default hides labels that would overlap and truncates at 180 px with an ellipsis; issue 17)."""
    return alt.Axis(**{"labelOverlap": False, "labelLimit": 0, "labelFontSize": 12, **kwargs})


def names_legend(**kwargs) -> alt.Legend:
    """A legend whose labels are never cut short, with swatches as strong as the marks they stand for."""
    return alt.Legend(**{"labelLimit": 0, "labelFontSize": 12, "symbolOpacity": 1, **kwargs})


def definitions(keys: pd.Series) -> pd.Series:
    """Each attribute key's definition from the catalogue (with its comparison rule), for tooltips."""
    known = {a.key: f"{a.definition} (rated {a.rating})" for a in catalogue.attributes()}
    return keys.map(known).fillna("")


def scenario_bars(frame: pd.DataFrame) -> alt.Chart:
    """Samples per scenario group, one colour per dataset."""
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("samples:Q", title="samples"),
            y=alt.Y("scenario_group:N", title=None, sort="-x", axis=names_axis()),
            color=alt.Color("dataset:N", title="dataset", legend=names_legend()),
            tooltip=["dataset", "scenario_group", "samples"],
        )
        .properties(height=alt.Step(24))
    )


def agreement_heatmap(frame: pd.DataFrame) -> alt.Chart:
    """Agreement between judges on shared samples, read against chance: each cell is coloured by
    Cohen's kappa (0 = what the two judges' choice frequencies give by chance), on a scale fitted to
    the pairs shown (the diagonal, kappa 1, is clamped) so that differences near chance are visible;
    the text is the agreement rate, the tooltip adds the chance level, kappa's 94% interval and the
    count shared. A frame without kappa (older callers) is coloured by the rate on [0, 1]."""
    base = alt.Chart(frame).encode(
        x=alt.X("judge_a:N", title=None, axis=names_axis(labelAngle=-40)),
        y=alt.Y("judge_b:N", title=None, axis=names_axis()),
    )
    tooltip = ["judge_a", "judge_b", "shared", "agree", alt.Tooltip("rate:Q", title="agreement", format=fmt.PERCENT_D3)]
    if "kappa" in frame:
        off = frame.loc[frame["judge_a"] != frame["judge_b"], "kappa"].dropna()
        lo = min(float(off.min()) if len(off) else 0.0, -0.05)
        hi = max(float(off.max()) if len(off) else 0.0, 0.05)
        color = alt.Color("kappa:Q", title="Cohen's kappa",
                          scale=alt.Scale(domain=[lo, hi], domainMid=0, scheme="redblue", clamp=True, reverse=True))
        tooltip += [alt.Tooltip("chance:Q", title="by chance", format=fmt.PERCENT_D3),
                    alt.Tooltip("kappa:Q", title="kappa", format=fmt.COEFFICIENT_D3),
                    alt.Tooltip("kappa_lo:Q", title="kappa from", format=fmt.COEFFICIENT_D3),
                    alt.Tooltip("kappa_hi:Q", title="kappa to", format=fmt.COEFFICIENT_D3)]
        strong = f"abs(datum.kappa) > {0.6 * max(abs(lo), hi):.4f}"
    else:
        color = alt.Color("rate:Q", title="agreement", scale=alt.Scale(domain=[0, 1], scheme="blues"))
        strong = "datum.rate > 0.6"
    cells = base.mark_rect().encode(color=color, tooltip=tooltip)
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("rate:Q", format=fmt.PERCENT_D3),
        color=alt.condition(strong, alt.value("white"), alt.value("black")),
    )
    return (cells + text).properties(width=alt.Step(42), height=alt.Step(24))


# --------------------------------------------------------------------------- profiles and similarity

#: name of the click selection on the profile chart (fields: attribute, judge)
PROFILE_PICK = "attribute_pick"
#: name of the click selection on the similarity heatmap (fields: judge_a, judge_b)
CELL_PICK = "cell_pick"


def attribute_order(frame: pd.DataFrame, order: str = "catalogue") -> list[str]:
    """Attribute labels from top to bottom: catalogue order, or by the first judge's weight (largest first)."""
    if frame.empty:
        return []
    if order == "weight":
        first = frame["judge"].iloc[0]
        mine = frame[frame["judge"] == first].sort_values(["mean", "index"], ascending=[False, True], kind="stable")
        return list(mine["label"])
    if order != "catalogue":
        raise ValueError(f"order must be 'catalogue' or 'weight', not {order!r}")
    return list(frame.drop_duplicates("attribute").sort_values("index")["label"])


def percent_domain(frame: pd.DataFrame) -> list[float]:
    """The x range of :func:`profile_chart`: every bar and interval, and 45-55% at least, in steps of 5."""
    vals = pd.concat([frame["percent"], frame["percent_lo"], frame["percent_hi"]]).dropna()
    lo = min(float(vals.min()) if len(vals) else 50.0, 45.0)
    hi = max(float(vals.max()) if len(vals) else 50.0, 55.0)
    return [max(0.0, 5 * ((lo - 1) // 5)), min(100.0, 5 * -((-(hi + 1)) // 5))]


def profile_chart(frame: pd.DataFrame, *, order: str = "catalogue", select: bool = True,
                  title: str | None = None, domain: list[float] | None = None,
                  truth: pd.DataFrame | None = None) -> alt.LayerChart:
    """The paper's profile chart: per attribute, 100 * sigmoid(weight) in % as a bar from the 50% line
    (above 50: the judge rewards the attribute; below: it dislikes it), the credible interval as a
    whisker, one colour per judge (judges dodged within a row). ``frame`` is
    ``core.profile.profile_frame`` output. With ``select``, a click on a bar selects its
    (attribute, judge) under :data:`PROFILE_PICK`. ``domain`` fixes the x range (to draw charts
    side by side on one scale; default :func:`percent_domain` of the frame). ``truth`` (judge, label,
    percent; a synthetic dataset's known weights) is drawn as a black diamond on each judge's bar."""
    shape, values, data = _profile_parts(frame, order=order, title=title, domain=domain, truth=truth)
    return _profile_layers(*shape, select=select, **values, data=data)


def _profile_parts(frame: pd.DataFrame, *, order: str = "catalogue", title: str | None = None,
                   domain: list[float] | None = None, truth: pd.DataFrame | None = None):
    """:func:`profile_chart`'s inputs split three ways: its shape (judges, title, which layers: a
    template's key), the values that vary with the data (rows, x range, ticks, height) and its data."""
    judges = list(dict.fromkeys(frame["judge"]))
    rows = attribute_order(frame, order)
    step = min(16 + 6 * len(judges), 36)  # pixels per attribute row
    domain = list(domain) if domain is not None else percent_domain(
        frame if truth is None or not len(truth) else pd.concat([frame, truth[["percent"]]], ignore_index=True))
    ticks = list(range(int(-(-domain[0] // 10) * 10), int(domain[1]) + 1, 10))  # every 10%, 50 among them
    frame = frame.assign(definition=definitions(frame["attribute"])) if "attribute" in frame else frame.assign(definition="")
    frame = frame.assign(**{f"{k}_text": frame[c].map(fmt.percent_of_100) if c in frame else fmt.NOT_APPLICABLE
                            for k, c in (("preferred", "percent"), ("lo", "percent_lo"), ("hi", "percent_hi"))})
    data = {"main": frame, "fifty": pd.DataFrame({"x": [50.0]})}
    if truth is not None and len(truth):
        known = truth[truth["judge"].isin(judges) & truth["label"].isin(rows)]
        data["known"] = known.assign(true_text=known["percent"].map(fmt.percent_of_100))
    if "status" in frame and (frame["status"] != "measured").any():
        data["missing"] = frame[frame["status"] != "measured"].assign(x=50.0)
    # a fixed height (with yOffset a Step would size the offset band, not the row) that also holds
    # the legend, the axis and the title: Streamlit fits the whole chart into it
    height = step * max(len(rows), 1) + 80 + (24 if title else 0)
    return ((tuple(judges), title, tuple(data)), {"rows": rows, "domain": domain, "ticks": ticks, "height": height},
            data)


def _profile_layers(judges: tuple, title: str | None, roles: tuple, *, select: bool, rows: list, domain: list,
                    ticks: list, height, data: dict) -> alt.LayerChart:
    """The layers of :func:`profile_chart` over ``data`` (role -> frame, or a named dataset in a
    template)."""
    judges = list(judges)
    multi = len(judges) > 1
    y = alt.Y("label:N", sort=rows, title=None, axis=names_axis())
    enc = dict(y=y, color=alt.Color("judge:N", sort=judges, title=None, legend=names_legend(orient="top"),
                                    scale=alt.Scale(scheme="tableau10")))
    if multi:
        enc["yOffset"] = alt.YOffset("judge:N", sort=judges)
    scale = alt.Scale(domain=domain, nice=False, zero=False)
    x = alt.X("percent:Q", title="P(preferred | better on this attribute alone), %", scale=scale,
              axis=alt.Axis(values=ticks))
    # the percentages as the tables write them ("57.6%"): d3 cannot add a % to a number already in percent
    tooltip = [alt.Tooltip("judge:N"), alt.Tooltip("label:N", title="attribute"),
               alt.Tooltip("preferred_text:N", title="preferred"),
               alt.Tooltip("lo_text:N", title="interval from"),
               alt.Tooltip("hi_text:N", title="interval to"),
               alt.Tooltip("mean:Q", title="weight", format=fmt.WEIGHT_D3),
               alt.Tooltip("p_pos:Q", title="P(weight > 0)", format=fmt.PERCENT_D3),
               alt.Tooltip("definition:N", title="means")]
    base = alt.Chart(data["main"]).encode(**enc)
    bars = base.mark_bar(cornerRadiusEnd=2).encode(x=x, x2=alt.X2(datum=50), tooltip=tooltip)
    whiskers = base.mark_rule(strokeWidth=1.2, opacity=0.8).encode(
        x=alt.X("percent_lo:Q", scale=scale), x2="percent_hi:Q", color=alt.value("#444444"), tooltip=tooltip)
    if select:
        pick = alt.selection_point(name=PROFILE_PICK, fields=["attribute", "judge"], on="click")
        bars = bars.encode(opacity=alt.condition(pick, alt.value(0.85), alt.value(0.4))).add_params(pick)
    fifty = alt.Chart(data["fifty"]).mark_rule(color="#666666", strokeDash=[5, 4], size=1.5).encode(x="x:Q")
    layers = [whiskers, bars, fifty]
    if "known" in roles:
        layers.append(alt.Chart(data["known"]).mark_point(shape="diamond", filled=True, color="black", size=45).encode(
            y=y, x=alt.X("percent:Q", scale=scale),
            tooltip=[alt.Tooltip("judge:N"), alt.Tooltip("label:N", title="attribute"),
                     alt.Tooltip("true_text:N", title="true")],
            **({"yOffset": enc["yOffset"]} if multi else {})))
    if "missing" in roles:
        # an attribute the feature set did not measure (or too few samples differ on) has no estimate:
        # its row says so at the 50% line instead of drawing the prior as if it were a finding
        note = alt.Chart(data["missing"]).mark_text(align="left", dx=4, fontSize=11, color="#888888",
                                                    fontStyle="italic").encode(
            y=y, x=alt.X("x:Q", scale=scale), text="status:N",
            tooltip=[alt.Tooltip("judge:N"), alt.Tooltip("label:N", title="attribute"),
                     alt.Tooltip("status:N", title="no estimate"),
                     alt.Tooltip("differing:Q", title="samples where A and B differ")],
            **({"yOffset": enc["yOffset"]} if multi else {}))
        layers.append(note)
    # bars above the whiskers, so that a click on a bar reaches the bar (and its selection), not the
    # whisker drawn across it; the bars are slightly transparent so the whisker still shows through
    chart = alt.layer(*layers).properties(height=height)
    if title:
        chart = chart.properties(title=title)
    return chart


def difference_chart(frame: pd.DataFrame, a: str, b: str, *, order: list[str] | None = None) -> alt.LayerChart:
    """Judge a minus judge b per attribute (weights, log-odds): a point at the posterior-mean
    difference, the interval as a whisker, a zero line. ``frame`` is ``core.compare.difference_of``
    output; points whose interval excludes 0 are coloured by which judge rewards the attribute more."""
    shape, values, data = _difference_parts(frame, a, b, order=order)
    return _difference_layers(*shape, **values, data=data)


def _difference_parts(frame: pd.DataFrame, a: str, b: str, *, order: list[str] | None = None):
    rows = order or list(frame.sort_values("index")["label"])
    verdict = pd.Series("no clear difference", index=frame.index)
    verdict[frame["lo"] > 0] = f"{a} rewards more"
    verdict[frame["hi"] < 0] = f"{b} rewards more"
    data = frame.assign(verdict=verdict,
                        definition=definitions(frame["attribute"]) if "attribute" in frame else "")
    return (a, b, ("main", "zero")), {"rows": rows}, {"main": data, "zero": pd.DataFrame({"x": [0.0]})}


def _difference_layers(a: str, b: str, roles: tuple, *, rows: list, data: dict) -> alt.LayerChart:
    y = alt.Y("label:N", sort=rows, title=None, axis=names_axis())
    color = alt.Color("verdict:N", title=None, legend=names_legend(orient="top", direction="vertical"),
                      scale=alt.Scale(domain=[f"{a} rewards more", f"{b} rewards more", "no clear difference"],
                                      range=["#1f77b4", "#d62728", "#9a9a9a"]))
    tooltip = [alt.Tooltip("label:N", title="attribute"), alt.Tooltip("a:Q", title=a, format=fmt.WEIGHT_D3),
               alt.Tooltip("b:Q", title=b, format=fmt.WEIGHT_D3), alt.Tooltip("diff:Q", title="difference", format=fmt.WEIGHT_D3),
               alt.Tooltip("lo:Q", title="interval from", format=fmt.WEIGHT_D3),
               alt.Tooltip("hi:Q", title="interval to", format=fmt.WEIGHT_D3),
               alt.Tooltip("p_pos:Q", title=f"P({a} > {b})", format=fmt.PERCENT_D3),
               alt.Tooltip("definition:N", title="means")]
    base = alt.Chart(data["main"]).encode(y=y, tooltip=tooltip)
    whiskers = base.mark_rule(strokeWidth=1.6).encode(x=alt.X("lo:Q", title=f"weight of {a} minus {b}"), x2="hi:Q",
                                                      color=color)
    points = base.mark_point(filled=True, size=60).encode(x="diff:Q", color=color)
    zero = alt.Chart(data["zero"]).mark_rule(color="#666666", strokeDash=[5, 4]).encode(x="x:Q")
    return alt.layer(whiskers, points, zero).properties(height=alt.Step(20))


def similarity_heatmap(matrix: pd.DataFrame, *, select: bool = True) -> alt.LayerChart:
    """Judge x judge similarity in the matrix's own order (pass it ordered by clustering), with the
    value in each cell when there is room. With ``select``, a click on a cell selects its
    (judge_a, judge_b) under :data:`CELL_PICK`."""
    names = list(matrix.index)
    long = (matrix.rename_axis(index="judge_a", columns="judge_b").stack(future_stack=True)
            .rename("similarity").reset_index())
    cell = 44 if len(names) <= 12 else 26
    base = alt.Chart(long).encode(
        x=alt.X("judge_b:N", sort=names, title=None, axis=names_axis(labelAngle=-45)),
        y=alt.Y("judge_a:N", sort=names, title=None, axis=names_axis()),
    )
    color = alt.Color("similarity:Q", title="similarity",
                      scale=alt.Scale(scheme="redblue", domain=[-1.0, 1.0]))  # symmetric: 0 is white
    tooltip = ["judge_a:N", "judge_b:N", alt.Tooltip("similarity:Q", format=fmt.COEFFICIENT_D3)]
    cells = base.mark_rect().encode(color=color, tooltip=tooltip)
    if select:
        pick = alt.selection_point(name=CELL_PICK, fields=["judge_a", "judge_b"], on="click")
        cells = cells.encode(opacity=alt.condition(pick, alt.value(1.0), alt.value(0.55))).add_params(pick)
    layers = [cells]
    if len(names) <= 16:
        values = base.mark_text(fontSize=11).encode(
            text=alt.Text("similarity:Q", format=fmt.COEFFICIENT_D3),
            color=alt.condition("datum.similarity > 0.6", alt.value("white"), alt.value("black")),
            tooltip=tooltip)
        if select:
            # the number drawn over a cell receives a click there: it gets its own selection (one
            # Vega-Lite selection cannot span two layers), which :func:`cell_selection` reads too
            values = values.add_params(alt.selection_point(name=CELL_PICK + "_value", fields=["judge_a", "judge_b"],
                                                           on="click"))
        layers.append(values)
    return alt.layer(*layers).properties(width=alt.Step(cell), height=alt.Step(cell))


def cell_selection(event) -> list[dict]:
    """The heatmap cell clicked (on the cell or on its number), from an ``st.altair_chart`` event."""
    return selection_of(event, CELL_PICK) or selection_of(event, CELL_PICK + "_value")


def selection_of(event, name: str) -> list[dict]:
    """The selected points of one selection parameter in an ``st.altair_chart(on_select=...)`` event."""
    try:
        sel = event["selection"][name]
    except (KeyError, TypeError):
        return []
    return [dict(p) for p in sel] if isinstance(sel, list) else []


def chart_image(chart: alt.TopLevelMixin, fmt: str, *, scale: float = 2.0) -> bytes:
    """The chart as a PNG or SVG file, rendered offline by vl-convert."""
    import vl_convert as vlc

    spec = chart.to_json()
    if fmt == "png":
        return vlc.vegalite_to_png(spec, scale=scale)
    if fmt == "svg":
        return vlc.vegalite_to_svg(spec).encode("utf-8")
    raise ValueError(f"format must be 'png' or 'svg', not {fmt!r}")


def judge_rates(frame: pd.DataFrame, value: str, *, title: str, count: str | None = None) -> alt.LayerChart:
    """One bar per judge: a rate in [0, 1] (agreement with a reference, position consistency),
    with a rule at 50% and the count behind each rate in the tooltip. Rows without a rate are left out."""
    data = frame.dropna(subset=[value])[["name", value] + ([count] if count else [])]
    tooltip = ["name", alt.Tooltip(f"{value}:Q", title=title, format=fmt.PERCENT_D3)]
    if count:
        tooltip.append(alt.Tooltip(f"{count}:Q", title="samples"))
    bars = alt.Chart(data).mark_bar().encode(
        x=alt.X(f"{value}:Q", title=title, scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format=fmt.PERCENT_AXIS)),
        y=alt.Y("name:N", title=None, sort="-x", axis=names_axis()),
        tooltip=tooltip,
    )
    rule = alt.Chart(pd.DataFrame({"x": [0.5]})).mark_rule(strokeDash=[4, 3], color="gray").encode(x="x:Q")
    return (bars + rule).properties(height=alt.Step(22))


# --------------------------------------------------------------------------- simulator (pages/simulate.py)

#: colours of the simulator's stages, fixed so that several judges read alike
STAGE_COLORS = {"observed": "#4c78a8", "predicted before": "#9d9d9d", "predicted after": "#e45756"}


def _half_line(axis: str = "x") -> alt.Chart:
    return alt.Chart(pd.DataFrame({axis: [0.5]})).mark_rule(strokeDash=[4, 3], color="gray").encode(
        **{axis: f"{axis}:Q"})


def simulation_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """Observed, predicted-before and predicted-after win rates per judge, each with its 94% interval
    (a thin bar: credible; the observed one: Jeffreys) and, for predictions, the predictive interval
    (what the judge's labels on these pairs would show) as a faint band. Columns: judge, stage,
    mean, lo, hi, pred_lo, pred_hi (win rates as shares)."""
    stages = [s for s in STAGE_COLORS if s in set(frame["stage"])]
    color = alt.Color("stage:N", title=None, sort=stages, legend=names_legend(symbolType="circle"),
                      scale=alt.Scale(domain=stages, range=[STAGE_COLORS[s] for s in stages]))
    base = alt.Chart(frame).encode(
        y=alt.Y("judge:N", title=None, axis=names_axis()),
        yOffset=alt.YOffset("stage:N", sort=stages),
        color=color,
    )
    tooltip = ["judge", "stage", alt.Tooltip("mean:Q", format=fmt.PERCENT_D3, title="win rate"),
               alt.Tooltip("lo:Q", format=fmt.PERCENT_D3, title="94% from"), alt.Tooltip("hi:Q", format=fmt.PERCENT_D3, title="94% to"),
               alt.Tooltip("pred_lo:Q", format=fmt.PERCENT_D3, title="predictive from"),
               alt.Tooltip("pred_hi:Q", format=fmt.PERCENT_D3, title="predictive to")]
    band = base.transform_filter("isValid(datum.pred_lo)").mark_rule(strokeWidth=10, opacity=0.18).encode(
        x=alt.X("pred_lo:Q"), x2="pred_hi:Q")
    ci = base.mark_rule(strokeWidth=3).encode(
        x=alt.X("lo:Q", title="win rate of the model under test", axis=alt.Axis(format=fmt.PERCENT_AXIS),
                scale=alt.Scale(zero=False)),
        x2="hi:Q", tooltip=tooltip)
    point = base.mark_point(filled=True, size=80).encode(x="mean:Q", tooltip=tooltip)
    return (band + ci + point + _half_line()).properties(height=alt.Step(18))


def contribution_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """Each attribute's contribution to the change in win rate (Shapley; they add up to the change),
    one bar per judge with its 94% interval. Columns: judge, label, direction, rate, mean, lo, hi."""
    data = frame.assign(change=frame["direction"].map({"inject": "+", "suppress": "-"}) + " " + frame["label"])
    base = alt.Chart(data).encode(
        y=alt.Y("change:N", title=None, axis=names_axis()),
        yOffset=alt.YOffset("judge:N"),
        color=alt.Color("judge:N", title="judge", legend=names_legend(), scale=alt.Scale(scheme="tableau10")),
    )
    tooltip = ["judge", "label", "direction", alt.Tooltip("rate:Q", format=fmt.PERCENT_D3, title="success rate"),
               alt.Tooltip("mean:Q", format=fmt.SIGNED_PERCENT_D3, title="contribution"),
               alt.Tooltip("lo:Q", format=fmt.SIGNED_PERCENT_D3, title="94% from"), alt.Tooltip("hi:Q", format=fmt.SIGNED_PERCENT_D3, title="94% to")]
    bars = base.mark_bar(opacity=0.75).encode(
        x=alt.X("mean:Q", title="contribution to the change in win rate (points)", axis=alt.Axis(format=fmt.SIGNED_PERCENT_AXIS)),
        tooltip=tooltip)
    err = base.mark_rule(color="black").encode(x="lo:Q", x2="hi:Q", tooltip=tooltip)
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="gray").encode(x="x:Q")
    return (bars + err + zero).properties(height=alt.Step(16))


def injection_ranking_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """The top-5 and bottom-5 attributes to inject: predicted gain in win rate with its 94% interval.
    Columns: label, mean, lo, hi, part ("top 5" / "bottom 5")."""
    order = list(frame.sort_values("mean", ascending=False)["label"])
    base = alt.Chart(frame).encode(y=alt.Y("label:N", title=None, sort=order, axis=names_axis()))
    tooltip = ["label", "part", alt.Tooltip("mean:Q", format=fmt.SIGNED_PERCENT_D3, title="gain"),
               alt.Tooltip("lo:Q", format=fmt.SIGNED_PERCENT_D3, title="94% from"), alt.Tooltip("hi:Q", format=fmt.SIGNED_PERCENT_D3, title="94% to"),
               alt.Tooltip("p_positive:Q", format=fmt.PERCENT_D3, title="P(gain > 0)")]
    bars = base.mark_bar().encode(
        x=alt.X("mean:Q", title="predicted gain in win rate when injected into every pair", axis=alt.Axis(format=fmt.SIGNED_PERCENT_AXIS)),
        color=alt.condition("datum.mean > 0", alt.value("#54a24b"), alt.value("#e45756")),
        tooltip=tooltip)
    err = base.mark_rule(color="black").encode(x="lo:Q", x2="hi:Q", tooltip=tooltip)
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="gray").encode(x="x:Q")
    return (bars + err + zero).properties(height=alt.Step(20))


def leaderboard_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """Raw against attribute-controlled win rate per model (a dumbbell; controlled with its 94% interval),
    models ordered by raw win rate. Columns: model, raw, controlled, controlled_lo, controlled_hi, sharp."""
    order = list(frame.sort_values("raw", ascending=False)["model"])
    long = frame.melt(id_vars=["model", "sharp"], value_vars=["raw", "controlled"], var_name="rate",
                      value_name="win_rate")
    y = alt.Y("model:N", title=None, sort=order, axis=names_axis())
    link = alt.Chart(frame).mark_rule(color="gray").encode(y=y, x=alt.X("raw:Q"), x2="controlled:Q")
    ci = alt.Chart(frame).mark_rule(strokeWidth=3, opacity=0.5, color="#e45756").encode(
        y=y, x="controlled_lo:Q", x2="controlled_hi:Q")
    points = alt.Chart(long).mark_point(filled=True, size=90).encode(
        y=y,
        x=alt.X("win_rate:Q", title="win rate against all other models", axis=alt.Axis(format=fmt.PERCENT_AXIS),
                scale=alt.Scale(zero=False)),
        color=alt.Color("rate:N", title=None, legend=names_legend(), scale=alt.Scale(domain=["raw", "controlled"],
                                                             range=["#4c78a8", "#e45756"])),
        shape=alt.condition("datum.sharp", alt.value("diamond"), alt.value("circle")),
        tooltip=["model", "rate", alt.Tooltip("win_rate:Q", format=fmt.PERCENT_D3, title="win rate"), "sharp"])
    return (link + ci + points + _half_line()).properties(height=alt.Step(24))


def calibration_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """Predicted against observed P(A preferred) by decile of the prediction, one line per judge, with the
    observed share's 94% interval and the diagonal of perfect calibration. Columns: judge, bin, pairs,
    predicted, observed, lo, hi."""
    diag = alt.Chart(pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]})).mark_line(
        strokeDash=[4, 3], color="gray").encode(x="x:Q", y="y:Q")
    base = alt.Chart(frame).encode(
        x=alt.X("predicted:Q", title="predicted P(A preferred), decile mean", scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format=fmt.PERCENT_AXIS)),
        color=alt.Color("judge:N", title="judge", legend=names_legend(), scale=alt.Scale(scheme="tableau10")),
    )
    tooltip = ["judge", "bin", "pairs", alt.Tooltip("predicted:Q", format=fmt.PERCENT_D3),
               alt.Tooltip("observed:Q", format=fmt.PERCENT_D3), alt.Tooltip("lo:Q", format=fmt.PERCENT_D3, title="94% from"),
               alt.Tooltip("hi:Q", format=fmt.PERCENT_D3, title="94% to")]
    line = base.mark_line(point=True).encode(
        y=alt.Y("observed:Q", title="observed share of A (ties 1/2)", scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format=fmt.PERCENT_AXIS)),
        tooltip=tooltip)
    err = base.mark_rule(opacity=0.5).encode(y="lo:Q", y2="hi:Q", tooltip=tooltip)
    return (diag + err + line).properties(width=360, height=360)


WATERFALL_COLOURS = {"towards A": "#4c78a8", "towards B": "#e45756", "logit P(A)": "#54a24b"}


def contribution_waterfall(frame: pd.DataFrame, *, order: str = "magnitude") -> alt.LayerChart:
    """One judge's per-attribute contributions w_k·x_k to logit P(A) on one sample, as a waterfall:
    each bar starts where the previous one ended, and the last bar (the sum) is the logit of the
    predicted P(A). Attributes with no contribution (equal on the sample) are left out. ``order``:
    "magnitude" (largest first) or "given" (the frame's order). Columns: label, contribution; x and
    weight go to the tooltip when present."""
    d = frame[frame["contribution"] != 0].copy()
    if order == "magnitude":
        d = d.reindex(d["contribution"].abs().sort_values(ascending=False, kind="stable").index)
    d["end"] = d["contribution"].cumsum()
    d["start"] = d["end"] - d["contribution"]
    d["kind"] = d["contribution"].map(lambda c: "towards A" if c > 0 else "towards B")
    total = float(d["contribution"].sum())
    d = pd.concat([d, pd.DataFrame([{"label": "logit P(A) = sum", "contribution": total, "start": 0.0, "end": total,
                                     "kind": "logit P(A)"}])], ignore_index=True)
    d["step"] = range(len(d))
    for col in ("x", "weight"):
        if col not in d:
            d[col] = None
    bars = alt.Chart(d).mark_bar().encode(
        y=alt.Y("label:N", title=None, sort=alt.EncodingSortField(field="step", order="ascending"),
                axis=names_axis()),
        x=alt.X("start:Q", title="contribution to logit P(A)  (right: towards A, left: towards B)"),
        x2="end:Q",
        color=alt.Color("kind:N", title=None, scale=alt.Scale(domain=list(WATERFALL_COLOURS),
                                                             range=list(WATERFALL_COLOURS.values()))),
        tooltip=["label", alt.Tooltip("x:Q", title="A vs B (x)"), alt.Tooltip("weight:Q", format=fmt.WEIGHT_D3),
                 alt.Tooltip("contribution:Q", format=fmt.WEIGHT_D3), alt.Tooltip("end:Q", format=fmt.WEIGHT_D3, title="running sum")],
    )
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="gray").encode(x="x:Q")
    return (bars + zero).properties(height=alt.Step(20))


# --------------------------------------------------------------------------- drawing on a page


def _share_altair_class_table() -> bool:
    """Altair rebuilds a hash table of all its ~600 schema classes on every ``SchemaBase.from_dict``,
    and every shorthand string in an encoding (``x2="hi:Q"``, a tooltip field) makes one such call:
    40% of building a chart (vega/altair#3547, still open). The table depends only on the classes,
    so build it once. Guarded: on an Altair without these internals nothing is patched (False)."""
    from altair.utils import schemapi

    base, table_cls = getattr(schemapi, "SchemaBase", None), getattr(schemapi, "_FromDict", None)
    if base is None or table_cls is None or not hasattr(base, "_default_wrapper_classes"):
        return False
    if getattr(base.from_dict, "shared_class_table", False):
        return True
    tables: dict = {}

    def from_dict(cls, dct, validate: bool = True):
        if validate:
            cls.validate(dct)
        key = cls._default_wrapper_classes.__func__
        if key not in tables:
            tables[key] = table_cls(cls._default_wrapper_classes())
        return tables[key].from_dict(dct, cls)

    from_dict.shared_class_table = True
    base.from_dict = classmethod(from_dict)
    return True


_share_altair_class_table()

try:  # Streamlit's own Altair-to-Vega-Lite conversion (data as Arrow, its theme defaults)
    from streamlit.elements.vega_charts import _convert_altair_to_vega_lite_spec as _to_vega_lite
except ImportError:  # pragma: no cover - a later Streamlit renamed it: draw uncached (test_charts_are_cached)
    _to_vega_lite = None


def show(build: Callable[..., alt.TopLevelMixin], *args, where=None, key: str | None = None,
         width: str | int | None = None, on_select: str = "ignore", **kwargs):
    """``st.altair_chart(build(*args, **kwargs))``, with the finished Vega-Lite spec cached: a builder
    with a template (:data:`_TEMPLATES`: the profile and difference charts) has its spec built once per
    shape and only its data and data-dependent values swapped in (:func:`templated_spec`); the others
    are cached on the builder and its inputs, so a rerun with the same data (any widget change
    elsewhere on the page) skips building and validating the chart, 40-80 ms a chart in Altair.
    ``where``: a container or column (default: the page)."""
    target = where or st
    if _to_vega_lite is None:
        return target.altair_chart(build(*args, **kwargs), key=key, width=width, on_select=on_select)
    if build.__name__ in _TEMPLATES and _arrow_bytes is not None:
        spec = templated_spec(build.__name__, *args, **kwargs)
    else:
        spec = _vega_lite_spec(build.__name__, args, tuple(sorted(kwargs.items())))
    return target.vega_lite_chart(spec=spec, key=key, width=width, on_select=on_select)


def _convert(chart: alt.TopLevelMixin) -> dict:
    # Streamlit converts with chart.to_dict(), which validates the spec against the Vega-Lite schema:
    # about half of a chart's conversion (jsonschema), paid on every page interaction that shows new
    # data. The builders' specs are validated by the tests (each builder's chart.to_dict()), so a page
    # run converts without validating again.
    object.__setattr__(chart, "to_dict", functools.partial(type(chart).to_dict, chart, validate=False))
    return _to_vega_lite(chart)


def _frame_key(frame: pd.DataFrame) -> bytes:
    """A chart frame's part of the spec cache's key: the frame pickled. Streamlit's own key for a frame
    (``pandas.util.hash_pandas_object`` over its values and dtypes) took 3-6 ms for a chart's few-row
    frame, 20-30 times the pickle, and was paid for every chart on every rerun of a page, a cache hit
    included (some 8% of a page run). A pickle holds everything the frame holds (index, columns, dtypes,
    values, attrs) and loads back equal, so two frames that differ never share a key; nor does Streamlit's
    sampling of frames over 50,000 rows apply. A frame that cannot be pickled (which ``st.cache_data``
    could not return either) is keyed as Streamlit keys it."""
    import pickle

    try:
        return pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - any unpicklable cell: the slower key that does not pickle
        from pandas.util import hash_pandas_object

        return b"".join([repr(frame.shape).encode(), hash_pandas_object(frame.dtypes).to_numpy().tobytes(),
                         hash_pandas_object(frame).to_numpy().tobytes()])


@st.cache_data(show_spinner=False, max_entries=256, hash_funcs={pd.DataFrame: _frame_key})
def _vega_lite_spec(builder: str, args: tuple, kwargs: tuple) -> dict:
    return _convert(globals()[builder](*args, **dict(kwargs)))


# --------------------------------------------------------------------------- templates: a spec per shape

try:  # how Streamlit names and serialises a chart's data (vega_charts._to_arrow_dataset)
    from streamlit.dataframe_util import convert_anything_to_arrow_bytes as _arrow_bytes
    from streamlit.util import calc_hash as _calc_hash
except ImportError:  # pragma: no cover - moved in a later Streamlit: show() builds those charts whole
    _arrow_bytes = _calc_hash = None

#: builder -> (its parts function, its layers function): see :func:`templated_spec`
_TEMPLATES = {"profile_chart": ("_profile_parts", "_profile_layers"),
              "difference_chart": ("_difference_parts", "_difference_layers")}
#: stand-ins for the values that vary with the data, unlike any a chart holds
_HOLES = {"rows": ["\x00rows"], "domain": [-1.0e9 - 1, 1.0e9 + 1], "ticks": [-1.0e9 - 3], "height": 987_654_321}


def _fill(node, values: dict):
    """``node`` (a spec) with every stand-in of :data:`_HOLES` replaced by its value."""
    for name, hole in _HOLES.items():
        if name in values and node == hole and type(node) is type(hole):
            return values[name]
    if isinstance(node, dict):
        return {k: _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    return node


@functools.lru_cache(maxsize=64)
def _template(builder: str, shape: tuple, select: bool, holes: tuple) -> dict:
    """The spec of ``builder`` for one shape, over named stand-in datasets (``"\x00main"``) and the
    stand-in values of :data:`_HOLES`; built and converted once (Altair's layering deep-copies every
    layer, and its conversion walks them all: most of a chart's cost)."""
    parts, layers = _TEMPLATES[builder]
    roles = shape[-1]
    data = {role: alt.Data(name="\x00" + role) for role in roles}
    kwargs = {"select": select} if builder == "profile_chart" else {}
    return _convert(globals()[layers](*shape, **kwargs, **{h: _HOLES[h] for h in holes}, data=data))


def templated_spec(builder: str, *args, select: bool = True, **kwargs) -> dict:
    """The spec ``show`` draws for a builder with a template: its cached template with this call's
    values and data filled in, each dataset as Streamlit's own conversion names and serialises it (by a
    hash of its Arrow bytes). The same spec as converting ``builder(*args, **kwargs)`` whole
    (tests/test_app.py checks it), for a fraction of the cost."""
    parts, _ = _TEMPLATES[builder]
    shape, values, data = globals()[parts](*args, **kwargs)
    spec = _fill(_template(builder, shape, select if builder == "profile_chart" else True, tuple(values)), values)
    names = {}
    datasets = {}
    for role, frame in data.items():
        raw = _arrow_bytes(frame)
        names["\x00" + role] = name = _calc_hash(raw)
        datasets[name] = raw

    def rename(node):
        if isinstance(node, dict):
            if set(node) == {"name"} and node["name"] in names:
                return {"name": names[node["name"]]}
            return {k: rename(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rename(v) for v in node]
        return node

    spec = rename(spec)
    spec["datasets"] = {**spec.get("datasets", {}), **datasets}
    return spec


EXPERIMENT_COLORS = {"measured": "#4c78a8", "predicted": "#e45756", "simulated": "#9d9d9d"}


def experiment_chart(frame: pd.DataFrame, *, shift: bool = False) -> alt.LayerChart:
    """Per arm of a manipulation experiment: the measured value beside the profile's prediction (and the
    Simulator's a-priori one), each with its 94% interval (thick) and, for predictions, the predictive
    interval (faint band: where the measured value should land). ``shift``: the values are shifts against
    the control (signed), else win rates. Columns: arm, stage, mean, lo, hi, pred_lo, pred_hi."""
    stages = [s for s in EXPERIMENT_COLORS if s in set(frame["stage"])]
    color = alt.Color("stage:N", title=None, sort=stages, legend=names_legend(symbolType="circle"),
                      scale=alt.Scale(domain=stages, range=[EXPERIMENT_COLORS[s] for s in stages]))
    base = alt.Chart(frame).encode(y=alt.Y("arm:N", title=None, axis=names_axis(), sort=None),
                                   yOffset=alt.YOffset("stage:N", sort=stages), color=color)
    number = fmt.SIGNED_PERCENT_D3 if shift else fmt.PERCENT_D3
    tooltip = ["arm", "stage", alt.Tooltip("mean:Q", format=number, title="shift" if shift else "win rate"),
               alt.Tooltip("lo:Q", format=number, title="94% from"), alt.Tooltip("hi:Q", format=number, title="94% to"),
               alt.Tooltip("pred_lo:Q", format=number, title="predictive from"),
               alt.Tooltip("pred_hi:Q", format=number, title="predictive to")]
    band = base.transform_filter("isValid(datum.pred_lo)").mark_rule(strokeWidth=10, opacity=0.18).encode(
        x=alt.X("pred_lo:Q"), x2="pred_hi:Q")
    title = "shift in win rate against the control" if shift else "win rate against the baseline"
    ci = base.transform_filter("isValid(datum.lo)").mark_rule(strokeWidth=3).encode(
        x=alt.X("lo:Q", title=title, axis=alt.Axis(format=fmt.SIGNED_PERCENT_AXIS if shift else fmt.PERCENT_AXIS), scale=alt.Scale(zero=False)),
        x2="hi:Q", tooltip=tooltip)
    point = base.mark_point(filled=True, size=80).encode(x="mean:Q", tooltip=tooltip)
    ref = alt.Chart(pd.DataFrame({"x": [0.0 if shift else 0.5]})).mark_rule(strokeDash=[4, 3], color="gray").encode(
        x="x:Q")
    return (band + ci + point + ref).properties(height=alt.Step(18))
