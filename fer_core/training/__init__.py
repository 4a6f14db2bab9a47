"""Training: `python -m fer_core train` and what one run needs.

The training loop and its run folder, the faces one epoch draws from, batch augmentation, weight averaging (EMA,
SWA). Imports models and data (and errors, atomic); never inference or app.
"""
