"""Baselines recover drivers and coefficients known by construction; Guideline 14 statistics; save and load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analytics.baseline import Baseline, BaselineSettings, g14_statistics, passes
from analytics.data import IntervalData
from analytics.errors import AnalyticsError, InsufficientDataError
from analytics.tests.synthetic import production_data, production_frame


def test_recovers_production_and_temperature_coefficients():
    data = production_data(days=56, machines=("n/l1/a", "n/l1/b"), a_kwh_per_unit=0.08, b_kwh_per_c=0.05, seed=3)
    model = Baseline(BaselineSettings(scopes=("machine", "line"))).fit(data)
    for path in ("n/l1/a", "n/l1/b"):
        m = model.models[f"machine:{path}"]
        assert "production" in m.groups
        assert {"heating", "cooling"} & set(m.groups), m.groups  # temperature matters
        assert "time_of_week" not in m.groups  # no weekly pattern beyond production
        coef = m.drivers()
        assert coef["good"] == pytest.approx(0.08, rel=0.03)
        # 0.05 kWh per K per 15 min = 0.2 kWh per K per hour; all temperatures lie below the balance points tried
        slope = sum(v for k, v in coef.items() if k.startswith("hdd")) - sum(v for k, v in coef.items() if k.startswith("cdd"))
        assert -slope == pytest.approx(0.2, rel=0.15)
        assert m.stats["passes_g14"] is True
        assert m.stats["holdout"]["cv_rmse"] < 0.1 and abs(m.stats["holdout"]["nmbe"]) < 0.02
    line = model.models["line:n/l1"]
    assert line.drivers()["good"] == pytest.approx(0.08, rel=0.03)
    assert line.members == ["n/l1/a", "n/l1/b"]


def test_time_of_week_profile_is_selected_when_it_is_the_driver():
    t = pd.date_range("2025-02-03", periods=96 * 42, freq="15min", tz="UTC")
    rng = np.random.default_rng(5)
    hour = t.hour.to_numpy()
    weekday = t.day_of_week.to_numpy() < 5
    kw = np.where(weekday & (hour >= 7) & (hour < 19), 40.0, 8.0) + rng.normal(0, 1.0, len(t))
    data = IntervalData.from_frame(pd.DataFrame({"machine": "s/l/hvac", "time": t, "power_mean_kw": kw}))
    model = Baseline(BaselineSettings(scopes=("machine",))).fit(data)
    m = model.models["machine:s/l/hvac"]
    assert m.groups == ["time_of_week"]
    assert m.stats["holdout"]["cv_rmse"] < 0.1
    _, expected = model.predict_matrix(data)
    # a weekday working hour is predicted at 40 kW, a Sunday night at 8 kW (per 15 min: 10 and 2 kWh)
    assert expected[0][(t.day_of_week == 2) & (t.hour == 10)].mean() == pytest.approx(10.0, rel=0.03)
    assert expected[0][(t.day_of_week == 6) & (t.hour == 3)].mean() == pytest.approx(2.0, rel=0.05)


def test_excluded_windows_do_not_bias_the_fit():
    frame = production_frame(days=42, seed=8)
    data_clean = IntervalData.from_frame(frame)
    spoiled = frame.copy()
    bad = np.zeros(len(frame), dtype=bool)
    bad[500:900] = True
    spoiled.loc[bad, "energy_kwh"] = 400.0  # a stuck meter's catch-up, say
    data = IntervalData.from_frame(spoiled)
    fitted = Baseline(BaselineSettings(scopes=("machine",))).fit(data, exclude=bad.reshape(1, -1))
    clean = Baseline(BaselineSettings(scopes=("machine",))).fit(data_clean)
    a = fitted.models["machine:north/l1/cnc-01"].drivers()["good"]
    b = clean.models["machine:north/l1/cnc-01"].drivers()["good"]
    assert a == pytest.approx(b, rel=0.03)
    naive = Baseline(BaselineSettings(scopes=("machine",))).fit(data)
    assert naive.models["machine:north/l1/cnc-01"].stats["fit"]["cv_rmse"] > 3 * fitted.models["machine:north/l1/cnc-01"].stats["fit"]["cv_rmse"]


def test_save_and_load_gives_the_same_predictions_and_refuses_newer_versions():
    data = production_data(days=28, machines=("n/l1/a", "n/l2/b"))
    model = Baseline().fit(data)
    payload = json.loads(json.dumps(model.to_dict()))
    assert payload["version"] == 1 and payload["train_start"].startswith("2025-01-06")
    assert {m["scope"] for m in payload["models"]} == {"machine:n/l1/a", "machine:n/l2/b", "line:n/l1", "line:n/l2", "site:n"}
    loaded = Baseline.from_dict(payload)
    for level in ("machine", "line", "site"):
        np.testing.assert_allclose(loaded.predict_matrix(data, level)[1], model.predict_matrix(data, level)[1])
    frame = model.predict(data, "site")
    assert list(frame.columns) == ["scope", "time", "energy_kwh", "expected_kwh"]
    assert frame["expected_kwh"].sum() == pytest.approx(frame["energy_kwh"].sum(), rel=0.01)
    stats = model.statistics()
    assert {"scope", "cv_rmse", "nmbe", "r2", "passes_g14"} <= set(stats[0])
    with pytest.raises(AnalyticsError, match="version"):
        Baseline.from_dict({**payload, "version": 99})
    with pytest.raises(AnalyticsError, match="not fitted"):
        Baseline().predict_matrix(data)


def test_too_little_data_is_an_error_that_says_how_much():
    data = production_data(days=3)
    with pytest.raises(InsufficientDataError, match="168 h needed"):
        Baseline().fit(data)


def test_g14_statistics_follow_the_guideline_formulas():
    y = np.array([10.0, 12.0, 11.0, 13.0])
    f = np.array([10.5, 11.5, 11.0, 12.0])
    st = g14_statistics(y, f, parameters=2)
    e = y - f
    assert st["cv_rmse"] == pytest.approx(np.sqrt((e ** 2).sum() / 2) / y.mean())
    assert st["nmbe"] == pytest.approx(e.sum() / (2 * y.mean()))
    assert st["r2"] == pytest.approx(1 - (e ** 2).sum() / ((y - y.mean()) ** 2).sum())
    assert passes(st, (0.3, 0.1)) is True and passes({"cv_rmse": None, "nmbe": 0.0}, (0.3, 0.1)) is None
    assert g14_statistics(y[:1], f[:1], 1)["cv_rmse"] is None


def test_robust_fit_resists_an_abnormal_period_left_in_the_training_data():
    frame = production_frame(days=42, seed=8)
    settings = BaselineSettings(scopes=("machine",), drivers=("production", "temperature"))
    truth = Baseline(settings).fit(IntervalData.from_frame(frame))
    spoiled = frame.copy()
    night = (spoiled["time"].dt.hour < 5) & (spoiled["time"] < "2025-02-03")  # a machine left on over nights
    spoiled.loc[night, "energy_kwh"] += 6.0
    data = IntervalData.from_frame(spoiled)
    plain = Baseline(settings).fit(data)
    robust = Baseline(settings.model_copy(update={"robust": True})).fit(data)
    key = "machine:north/l1/cnc-01"
    for name in ("hours", "good"):
        base = truth.models[key].drivers()[name]
        assert abs(robust.models[key].drivers()[name] - base) < 0.5 * abs(plain.models[key].drivers()[name] - base), name
