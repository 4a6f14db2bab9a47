"""The seven FER2013 classes, in the dataset's own label order (0..6)."""

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
