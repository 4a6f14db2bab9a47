"""Data: pictures and datasets turned into the 48x48 grey faces everything else reads.

The seven classes, decoding what a user hands in, face detection, the one crop, what a camera does to a face,
FER2013 and real-photo sets. The bottom layer: imports nothing from fer_core but errors and atomic.
"""
