"""Models: the networks, their cards, and how a model is measured into its card.

The architecture registry, the card's schema and files, ensembles, predictions and metrics, calibration, CPU
latency, the peer model and the robustness benchmark. Imports data (and errors, atomic); nothing above it.
"""
