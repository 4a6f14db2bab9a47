"""FER Studio: the Streamlit router. Pages live in pages/; all logic lives in fer_core."""
import streamlit as st

st.set_page_config(page_title="FER Studio", page_icon=":performing_arts:", layout="wide")
pg = st.navigation([st.Page("pages/upload.py", title="Upload & classify", icon=":material/image:", default=True)])
pg.run()
