"""Inference: a shipped model at work on pictures, frames and videos.

EmotionRecognizer, its int8 backend, Grad-CAM, the upload path (boxes, labels, charts), the webcam's tracking,
video files, and the benchmark that times these paths. Imports models and data (and errors, atomic); never
training or app.
"""
