"""Live webcam: each face's emotion on the webcam stream (streamlit-webrtc), and a tab that analyses a
video file frame by frame. The work happens in fer_core.inference.live and fer_core.inference.video."""
import time
from pathlib import Path

import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

import ui
from fer_core import FerError
from fer_core.app import rtc
from fer_core.data.images import dark_note
from fer_core.inference import live, video

VIDEO_MB = 200  # per video file (the server-wide limit in .streamlit/config.toml)
UI_REFRESH_S = 0.3  # the live counter updates about three times a second
CHART_EVERY = 4  # and the chart on every 4th (~1.2 s): each redraw costs the server and the browser frames
CONSTRAINTS = {"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}, "audio": False}


def session_processor(rec):
    """This session's LiveProcessor; a new one when the sidebar switches model or detector."""
    proc = st.session_state.get("live_processor")
    if proc is None or proc.recognizer is not rec:
        proc = st.session_state["live_processor"] = live.LiveProcessor(rec)
    return proc


def show_live(proc, boxes, tick, playing):
    """Write the processor's latest counters into their placeholders (stats, detail, chart), and every
    CHART_EVERY-th tick the main face's chart."""
    stats_box, detail_box, chart_box = boxes
    stats = proc.snapshot()
    stats_box.markdown(live.stats_line(stats))
    detail_box.caption(live.detail_line(stats, playing))
    if tick % CHART_EVERY:
        return
    if any(p is not None for _, p in stats.history):
        chart_box.plotly_chart(live.history_figure(stats), key=f"live_chart_{tick}")
    else:
        chart_box.caption("The chart of the main face's emotions over the last 30 s appears once a face is seen.")


def live_tab(rec):
    """The webcam stream; while it plays, a loop refreshes the counter and the chart."""
    proc = session_processor(rec)
    ctx = webrtc_streamer(key="live", mode=WebRtcMode.SENDRECV, rtc_configuration=rtc.rtc_configuration(),
                          media_stream_constraints=CONSTRAINTS, video_frame_callback=proc.av_callback,
                          async_processing=True)
    boxes, tick = (st.empty(), st.empty(), st.empty()), 0
    show_live(proc, boxes, tick, ctx.state.playing)
    while ctx.state.playing:
        time.sleep(UI_REFRESH_S)
        tick += 1
        show_live(proc, boxes, tick, ctx.state.playing)


def analyse_upload(upload, rec, max_frames):
    """Rows for an uploaded video, with a progress bar; None after showing why it failed."""
    bar = st.progress(0.0, text=f"Analysing {upload.name}…")

    def progress(done, total):
        if total:
            bar.progress(min(1.0, done / total), text=f"Analysing {upload.name}: frame {done} of {total}")

    try:
        with video.temp_video(upload.getvalue(), upload.name) as path:
            rows = video.analyse_video(path, rec, max_frames=max_frames, progress=progress)
    except FerError as e:
        bar.empty()
        st.error(str(e))
        return None
    bar.empty()
    return rows


def show_rows(name, rows):
    """Summary, emotion timeline and CSV download of a video's rows."""
    s = video.summary(rows)
    cols = st.columns(3)
    cols[0].metric("Frames analysed", s["analysed"])
    cols[1].metric("With a face", s["with_face"])
    cols[2].metric("Most frequent emotion", s["top"] or "none")
    dark = dark_note(s["brightness"])
    if not s["with_face"]:
        st.info(" ".join(filter(None, (f"{name}: no face found in the analysed frames.", dark))))
        return
    if dark:
        st.caption(dark)
    st.plotly_chart(video.timeline_figure(rows), key="video_timeline")
    st.download_button("Download per-frame CSV", video.rows_to_csv(rows), file_name=f"{Path(name).stem}_emotions.csv",
                       mime="text/csv", on_click="ignore")


def video_tab(rec):
    """Upload a video, analyse it once per (file, model, detector, frame budget), show the results."""
    upload = st.file_uploader("A video", type=list(video.VIDEO_TYPES), key="video_upload", max_upload_size=VIDEO_MB)
    max_frames = st.slider("Analyse at most this many frames, spread over the video", 30, 1200,
                           video.MAX_ANALYSED, step=30)
    if upload is None:
        return
    key = (upload.file_id, *ui.selection(), max_frames)
    cached = st.session_state.get("video_result")
    if cached is None or cached[0] != key:
        rows = analyse_upload(upload, rec, max_frames)
        if rows is None:
            return
        cached = st.session_state["video_result"] = (key, rows)
    show_rows(upload.name, cached[1])


st.title("Live webcam")
recognizer = ui.recognizer()
if recognizer is not None:
    tab_live, tab_file = st.tabs(["Live webcam", "Video file"])
    with tab_file:  # rendered first: the live tab's refresh loop holds the script while streaming
        video_tab(recognizer)
    with tab_live:
        live_tab(recognizer)
