"""App helpers: what the Streamlit pages compute, so that the pages only lay it out.

The comparison dashboard, the results table, the dataset explorer, downloads, the bundled examples, WebRTC's
ICE servers. Imports inference, models and data (and errors, atomic); the pages import it, never the other way.
"""
