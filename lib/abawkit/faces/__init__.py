"""Face extraction (stage 01): raw videos -> per-frame aligned and loose face crops, organizer-compatible.

``decode`` reads frames in bounded memory (decord chunks or OpenCV), ``detect`` finds faces (mediapipe
FaceDetection) and their 5 points (FaceMesh on a face region), ``track`` keeps the right person across frames,
``align`` cuts the crops, ``extract`` runs it over videos (resumable, sharded, in parallel) and ``report`` reads
the outputs back for figures.
"""
