"""FER Studio: the Streamlit router. Pages live in app_pages/ (not pages/: a folder of that name puts Streamlit
in its legacy multipage mode for a visitor whose first request is a page link); all logic lives in fer_core."""
import streamlit as st

import ui

st.set_page_config(page_title="FER Studio", layout="wide")
pg = st.navigation([
    st.Page("app_pages/upload.py", title="Upload & classify", icon=":material/image:", default=True),
    st.Page("app_pages/webcam.py", title="Live webcam", icon=":material/videocam:"),
    st.Page("app_pages/compare.py", title="Model comparison", icon=":material/leaderboard:"),
    st.Page("app_pages/explore.py", title="Dataset explorer", icon=":material/grid_view:"),
])
weight_warnings = ui.sidebar()
pg.run()
# The tab's icon after the page: to know an emoji, Streamlit first compiles a pattern of them all (0.05 s of a fresh
# server's first page). The emoji itself, not its shortcode, which Streamlit tries as an image (importing NumPy).
st.set_page_config(page_icon="\N{PERFORMING ARTS}")
ui.check_all_weights(weight_warnings)  # a fresh server checks most weights only after the page is drawn
