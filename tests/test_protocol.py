"""labs.protocol: every event kind parses, malformed lines say what is wrong, and a LiveRun draws
exactly the points a chart declares (x paired by step, tables by row, log axes honest)."""

from __future__ import annotations

import json

import pytest

from labs import protocol
from labs.protocol import Chart, LiveRun, ProtocolError


def line(**data) -> str:
    return json.dumps(data)


def test_every_event_kind_parses_into_its_type():
    chart = Chart("loss", y=("losses/loss",), log_y=True, look_for="it falls")
    cases = [
        (line(event="start", lab="mdp", config={"gamma": 0.9}, total_steps=7), protocol.Start("mdp", {"gamma": 0.9}, 7)),
        (line(event="metric", step=3, values={"a": 1, "b": 2.5, "c": None, "d": True}),
         protocol.Metric(3, {"a": 1.0, "b": 2.5, "c": None, "d": 1.0})),
        (line(event="progress", done=2, total=7), protocol.Progress(2, 7)),
        (line(event="log", text="hello"), protocol.Log("hello")),
        (line(event="table", name="t", columns=["x", "y"], rows=[[1, 2]]), protocol.Table("t", ["x", "y"], [[1, 2]])),
        (line(event="charts", charts=[chart.to_json()]), protocol.Charts((chart,))),
        (line(event="summary", headline={"k": 1}, artifacts=["m.pt"]), protocol.Summary({"k": 1}, ["m.pt"])),
        (line(event="error", message="boom", detail="tb"), protocol.Error("boom", "tb")),
        (line(event="newer", x=1), protocol.Other("newer", {"event": "newer", "x": 1})),
    ]
    for text, expected in cases:
        assert protocol.parse(text) == expected
        assert protocol.decode(json.loads(json.dumps(protocol.encode(expected)))) == expected  # the emitter's side


def test_non_finite_metric_values_arrive_as_none():
    assert protocol.parse('{"event": "metric", "step": 1, "values": {"x": NaN, "y": Infinity}}').values == {
        "x": None, "y": None}


@pytest.mark.parametrize("text, message", [
    ("this is not JSON", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"step": 1}', "no 'event' kind"),
    ('{"event": "metric", "step": 1, "values": {"x": "fast"}}', "metric value 'fast' is not a number"),
    ('{"event": "metric", "step": "one", "values": {}}', "step 'one' is not a number"),
    ('{"event": "metric", "step": 1, "values": [1]}', "metric values are not an object"),
    ('{"event": "table", "columns": ["x"], "rows": []}', "malformed table event"),
    ('{"event": "table", "name": "t", "columns": ["x"], "rows": [1]}', "a table needs a list of columns"),
    ('{"event": "charts", "charts": [{"title": "no y"}]}', "malformed charts event"),
])
def test_malformed_lines_raise_a_protocol_error_that_says_why(text, message):
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(")):
        protocol.parse(text)


def test_a_line_that_is_no_event_is_told_apart_from_a_bad_event():
    with pytest.raises(protocol.NotAnEvent):
        protocol.parse("warming up")
    with pytest.raises(ProtocolError) as bad:
        protocol.parse('{"event": "metric", "step": 1, "values": {"x": "fast"}}')
    assert not isinstance(bad.value, protocol.NotAnEvent)


def test_a_chart_needs_y_series_as_a_tuple():
    with pytest.raises(ValueError, match="no y series"):
        Chart("empty", y=())
    with pytest.raises(TypeError, match="tuples of series names"):
        Chart("string", y="losses/loss")  # type: ignore[arg-type]


def feed(run: LiveRun, *events: dict) -> LiveRun:
    for event in events:
        run.feed(json.dumps(event))
    return run


def test_live_run_accumulates_a_run():
    run = feed(LiveRun(), {"event": "start", "lab": "gae", "config": {"lam": 0.9}, "total_steps": 4},
               {"event": "metric", "step": 1, "values": {"loss": 2.0}}, {"event": "progress", "done": 1},
               {"event": "log", "text": "one\ntwo"}, {"event": "table", "name": "t", "columns": ["a"], "rows": [[1]]},
               {"event": "table", "name": "t", "columns": ["a"], "rows": [[2]]},
               {"event": "summary", "headline": {"final": 1.5}})
    assert (run.lab, run.config, run.total_steps, run.done) == ("gae", {"lam": 0.9}, 4, 1)
    assert run.series == {"loss": [(1, 2.0)]} and list(run.logs) == ["one", "two"]
    assert run.tables["t"].rows == [[2]]  # the latest table of a name
    assert run.succeeded and run.headline == {"final": 1.5}
    feed(run, {"event": "error", "message": "late failure"})
    assert not run.succeeded


def test_chart_lines_pair_x_and_y_by_step_and_keep_references_apart():
    run = feed(LiveRun(), {"event": "metric", "step": 1, "values": {"m": 1.0, "idle": 0.5, "formula": 0.5}},
               {"event": "metric", "step": 2, "values": {"idle": 0.4}},  # no x at step 2: left out
               {"event": "metric", "step": 3, "values": {"m": 4.0, "idle": 0.21, "formula": 0.2}})
    chart = Chart("bubble", x="m", y=("idle",), reference=("formula",))
    idle, formula = run.chart_lines(chart)
    assert (idle.label, idle.xs, idle.ys, idle.reference) == ("idle", [1.0, 4.0], [0.5, 0.21], False)
    assert (formula.xs, formula.ys, formula.reference) == ([1.0, 4.0], [0.5, 0.2], True)
    by_step = run.chart_lines(Chart("idle", y=("idle",)))[0]
    assert by_step.xs == [1.0, 2.0, 3.0] and by_step.ys == [0.5, 0.4, 0.21]


def test_chart_lines_read_table_columns():
    run = feed(LiveRun(), {"event": "table", "name": "sweep", "columns": ["gamma", "steps", "note"],
                           "rows": [[0.5, 2.6, "near"], [0.9, 10.8, "far"], [0.99, None, "?"]]})
    line_, = run.chart_lines(Chart("horizon", table="sweep", x="gamma", y=("steps",)))
    assert line_.xs == [0.5, 0.9] and line_.ys == [2.6, 10.8]  # the None row is not drawn
    by_row, = run.chart_lines(Chart("by row", table="sweep", y=("steps",)))
    assert by_row.xs == [0.0, 1.0]
    assert run.chart_lines(Chart("absent", table="nope", x="gamma", y=("steps",)))[0].xs == []


def test_log_axes_drop_values_that_are_not_positive():
    run = feed(LiveRun(), *[{"event": "metric", "step": s, "values": {"res": v}}
                            for s, v in ((1, 1.0), (2, 0.0), (3, -1e-3), (4, 1e-6), (5, None))])
    log_y, = run.chart_lines(Chart("residual", y=("res",), log_y=True))
    assert log_y.xs == [1.0, 4.0] and log_y.ys == [1.0, 1e-6]
    linear, = run.chart_lines(Chart("residual", y=("res",)))
    assert linear.ys == [1.0, 0.0, -1e-3, 1e-6]  # None (non-finite) is never drawn
    run = feed(LiveRun(), {"event": "metric", "step": 0, "values": {"y": 1.0}},
               {"event": "metric", "step": 2, "values": {"y": 2.0}})
    assert run.chart_lines(Chart("log x", y=("y",), log_x=True))[0].xs == [2.0]  # step 0 has no log


def test_missing_series_names_each_declared_series_the_run_never_produced():
    chart_m = Chart("metrics", x="m", y=("idle",), reference=("formula",))
    chart_t = Chart("table", table="sweep", x="gamma", y=("steps", "P(end b)"))
    run = feed(LiveRun(), {"event": "charts", "charts": [chart_m.to_json(), chart_t.to_json()]},
               {"event": "metric", "step": 1, "values": {"m": 1, "idle": 0.5}},
               {"event": "table", "name": "sweep", "columns": ["gamma", "steps"], "rows": [[0.5, 2]]})
    assert run.missing_series() == ["metrics: formula", "table: sweep.P(end b)"]
    assert feed(LiveRun(), {"event": "charts", "charts": [Chart("t", table="gone", y=("a",)).to_json()]}
                ).missing_series() == ["t: gone.a"]


def test_a_snapshot_does_not_change_while_the_run_goes_on():
    run = feed(LiveRun(), {"event": "metric", "step": 1, "values": {"x": 1.0}})
    snapshot = run.copy()
    feed(run, {"event": "metric", "step": 2, "values": {"x": 2.0, "y": 0.0}}, {"event": "log", "text": "later"})
    assert snapshot.series == {"x": [(1, 1.0)]} and not snapshot.logs


def test_formatting():
    assert [protocol.fmt_value(v) for v in (None, True, 0.123456, 3, (1.0, 2.5), "x")] == [
        "—", "true", "0.1235", "3", "1,2.5", "x"]
    assert [protocol.fmt_duration(s) for s in (None, 5.04, 125, 7260)] == ["—", "5.0s", "2m05s", "2h01m"]
    assert protocol.format_table(["k", "value"], [["a", 1.5], ["bb", None]]).splitlines() == [
        "  k   value", "  --  -----", "  a   1.5", "  bb  —"]
