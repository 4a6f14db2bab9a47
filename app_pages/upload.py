"""Upload & classify: photos or a camera snapshot -> every face's emotion, a probability chart per face,
Grad-CAM heat maps on request, and the results as CSV or JSON. The work is fer_core's; this page lays it out."""
import streamlit as st

import ui
from fer_core import EMOTIONS, FerError
from fer_core.app.downloads import results_rows, to_csv, to_json
from fer_core.app.examples import example_photo

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "heic", "heif", "avif"]
PHOTO_MB = 20  # per photo; a 12-megapixel phone JPEG is 3-8 MB
NO_FACE_HINT = ("Faces need to be roughly frontal and at least about 5% of the picture's shorter side; "
                "another face detector in the sidebar may find them.")


@st.cache_data(max_entries=32, show_spinner=False)
def analysed(_recognizer, selection, name, data, tta):
    """fer_core.inference.annotate.analyse, cached per (model and detector, file name, bytes, TTA): reruns (a toggle,
    a download) redraw without redoing the work."""
    return analyse(_recognizer, name, data, tta=tta)


def pictures() -> list:
    """(name, bytes) for each uploaded file, then the camera snapshot if one was taken; with neither, the
    bundled example photo once its button was clicked."""
    files = st.file_uploader("Photos: JPEG, PNG, HEIC, WebP, AVIF, BMP or GIF, one or many", type=IMAGE_TYPES,
                             accept_multiple_files=True, key="upload_files", max_upload_size=PHOTO_MB)
    found = [(f.name, f.getvalue()) for f in files or []]
    if st.toggle("Take a snapshot with the camera", key="use_camera",
                 help="A single photo, for when the live webcam page cannot connect (WebRTC blocked). "
                      "The browser asks for the camera only once this is on."):
        shot = st.camera_input("Camera snapshot", key="camera_shot")
        if shot is not None:
            found.append(("camera snapshot", shot.getvalue()))
    if found:
        st.session_state.pop("show_example", None)  # the visitor's own photos replace the example
    elif st.button("Try an example", key="try_example", icon=":material/photo:",
                   help="Classify a bundled photo (NASA's portrait of astronaut Eileen Collins, public domain) "
                        "exactly as an upload.") or st.session_state.get("show_example"):
        st.session_state["show_example"] = True  # kept while the toggles below rerun the page
        try:
            found.append(example_photo())
        except FerError as e:
            st.error(str(e))
    return found


def show_downloads(results):
    """CSV and JSON of every face found, one row per face."""
    rows = results_rows(r for r in results if not r.error)
    if not rows:
        return
    row = st.container(horizontal=True)  # the buttons side by side, each as wide as its label
    row.download_button("Download CSV", to_csv(rows), file_name="fer_results.csv", mime="text/csv",
                        on_click="ignore", icon=":material/download:")
    row.download_button("Download JSON", to_json(rows), file_name="fer_results.json",
                        mime="application/json", on_click="ignore", icon=":material/download:")


def show_face(key, index, face, crop, model):
    """One row: the label, the face's probability chart, and its Grad-CAM heat map when `model` (the fp32 PyTorch
    model) is given. `key` makes the chart unique when two faces have the same probabilities (the same photo twice)."""
    chart_col, cam_col = st.columns([3, 1], vertical_alignment="center")
    with chart_col:
        st.markdown(f"**Face {index}: {label_text(face)}**")
        st.plotly_chart(probability_chart(face.scores), config={"displayModeBar": False}, key=f"{key}-{index}")
    if model is not None:
        from fer_core.inference.gradcam import grad_cam, overlay  # PyTorch: loaded only once heat maps are asked for
        cam = overlay(crop, grad_cam(model, crop, target=face.label))
        cam_col.image(cam[:, :, ::-1], caption=f"Grad-CAM for {face.label}", width="stretch")
    else:
        cam_col.image(crop, caption="the face as the model sees it", width="stretch")


def show_face_table(result):
    """The faces of a group photo in one table, sortable by emotion or confidence."""
    st.dataframe(face_table(result.faces, result.crops), hide_index=True, row_height=56, column_config={
        "face": st.column_config.NumberColumn(width="small"),
        "crop": st.column_config.ImageColumn("picture", width="small", help="the face as the model sees it"),
        "confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent"),
        "probabilities": st.column_config.BarChartColumn(y_min=0.0, y_max=1.0, help=", ".join(EMOTIONS))})


def show_result(key, result, model):
    """One picture: the annotated photo beside a row per face (with heat maps when `model` is given), or a
    friendly message."""
    st.subheader(result.name, divider="gray")
    if result.error:
        st.error(f"**{result.name}**: {result.error}")
        return
    photo_col, faces_col = st.columns([2, 3])
    width, height = result.size
    photo_col.image(result.annotated[:, :, ::-1], output_format="JPEG", width="stretch",
                    caption=f"{width}x{height} px, analysed in {result.seconds:.2f} s")
    dark = dark_note(result.level)
    with faces_col:
        if not result.faces:
            st.info(" ".join(filter(None, (f"**{result.name}**: no face found.", dark, NO_FACE_HINT))))
        elif tally := faces_tally(result.faces):
            st.markdown(tally)
        if result.faces and dark:
            st.caption(dark)
        box = st.container()
        if len(result.faces) > MANY_FACES:  # a group: one table first, each face's chart on request
            show_face_table(result)
            box = st.expander("A chart for each face" + (" and its heat map" if model is not None else ""))
        with box:
            for index, (face, crop) in enumerate(zip(result.faces, result.crops), 1):
                show_face(key, index, face, crop, model)


st.title("Upload & classify")
inputs = pictures()
heat = st.toggle("Show Grad-CAM heat maps", key="show_gradcam",
                 help="Which parts of each face drove the model's decision (red: most, blue: least).")
flip = st.toggle("Average each face with its mirror image", value=True, key="flip_tta",
                 help="Test-time augmentation: about twice the model's time per face, and the accuracy of "
                      "the 'val accuracy (TTA)' column on the Model comparison page rather than 'val accuracy'.")
# Only now, with the title and the uploader sent (and, on a fresh server, drawn), do NumPy, OpenCV and ONNX Runtime
# load, and the model behind a spinner (ui.recognizer): a first visit shows the page at once, the first upload need
# not wait. PyTorch loads only for Grad-CAM, or where the model has no usable int8 file.
ui.before_first_heavy_import()
from fer_core.data.images import dark_note  # noqa: E402
from fer_core.inference.annotate import (MANY_FACES, UPLOAD_TTA, analyse, face_table, faces_tally,  # noqa: E402
                                        label_text, probability_chart)

recognizer = ui.recognizer()
if inputs:
    if recognizer is None:
        st.stop()
    with st.spinner("Finding faces…"):
        results = [analysed(recognizer, ui.selection(), name, data, UPLOAD_TTA if flip else "none")
                   for name, data in inputs]
    show_downloads(results)
    model = None
    if heat and any(r.faces for r in results):
        with st.spinner("Loading the model for Grad-CAM…"):
            model = recognizer.model
    for number, result in enumerate(results):
        show_result(f"chart-{number}", result, model)
