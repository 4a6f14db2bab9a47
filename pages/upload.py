"""Upload photos and see each face's emotion (a first, minimal page; the full app is the next issue)."""
import cv2
import streamlit as st

from fer_core import EMOTIONS, FerError
from fer_core.images import load_image


@st.cache_resource
def recognizer(model, detector):
    from fer_core import EmotionRecognizer
    return EmotionRecognizer(model=model, detector=detector)


st.title("Upload & classify")
files = st.file_uploader("Photos", type=["jpg", "jpeg", "png", "webp", "bmp", "gif"], accept_multiple_files=True)
for f in files or []:
    try:
        rec = recognizer(None, "auto")
        image = load_image(f.getvalue())
        faces = rec.predict(image)
    except FerError as e:
        st.error(f"{f.name}: {e}")
        continue
    for face in faces:
        x, y, w, h = face.box
        cv2.rectangle(image, (x, y), (x + w, y + h), (0, 200, 0), max(2, image.shape[1] // 300))
    st.image(image[:, :, ::-1], caption=f.name)
    if not faces:
        st.info(f"{f.name}: no face found")
    for i, face in enumerate(faces, 1):
        st.write(f"Face {i}: **{face.label}** ({face.confidence:.0%})")
        st.bar_chart({e: face.scores[e] for e in EMOTIONS}, horizontal=True)
