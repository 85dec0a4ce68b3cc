"""abawkit: a notebook suite for video facial expression recognition in the ABAW challenge (Aff-Wild2 EXPR)."""

__version__ = "0.1.0"
