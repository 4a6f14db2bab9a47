"""The face detectors' names, in the sidebar's order. A module of its own so that the app's sidebar can offer them
before OpenCV loads (the first page's title must not wait for it); `faces.detector` builds them."""

DETECTORS = ("auto", "yunet", "haar")  # auto: YuNet when its model is available, else Haar
