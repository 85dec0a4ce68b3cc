"""Temporal encoder over cached frame features (SPEC 5.6): model, windowed data, training and prediction."""
