"""FER Studio: the Streamlit router. Pages live in app_pages/ (not pages/: a folder of that name puts Streamlit
in its legacy multipage mode for a visitor whose first request is a page link); all logic lives in fer_core."""
import streamlit as st

import ui

st.set_page_config(page_title="FER Studio", page_icon=":performing_arts:", layout="wide")
pg = st.navigation([
    st.Page("app_pages/upload.py", title="Upload & classify", icon=":material/image:", default=True),
    st.Page("app_pages/webcam.py", title="Live webcam", icon=":material/videocam:"),
    st.Page("app_pages/compare.py", title="Model comparison", icon=":material/leaderboard:"),
    st.Page("app_pages/explore.py", title="Dataset explorer", icon=":material/grid_view:"),
])
ui.sidebar()
pg.run()
