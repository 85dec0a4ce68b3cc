"""Temporal encoder over cached frame features: model, windowed data, training and prediction."""
