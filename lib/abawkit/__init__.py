"""abawkit: a notebook suite for video facial expression recognition in the ABAW challenge (Aff-Wild2 EXPR)."""

import os as _os

# mediapipe logs through glog/absl at import and per graph; keep the console for what users need to read.
_os.environ.setdefault("GLOG_minloglevel", "2")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
