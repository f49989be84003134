"""Anomaly detection: a generic detector for any numeric frame (:mod:`analytics.anomaly.detector`) and the plant's
anomalies on baseline residuals and machine features (:mod:`analytics.anomaly.plant`)."""

from analytics.anomaly.detector import (
    METHODS,
    DetectedEvent,
    Detector,
    DetectorSettings,
    Prediction,
)

__all__ = ["METHODS", "DetectedEvent", "Detector", "DetectorSettings", "Prediction"]
