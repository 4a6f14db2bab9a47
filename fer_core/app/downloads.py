"""Results as a table to download: one row per face, as CSV or JSON text.

Columns: file, face (1-based, in reading order: rows from the top, each left to right, as the page numbers
them), the box x, y, w, h in the original picture's pixels, label, confidence and the seven probabilities in
EMOTIONS order.
Probabilities are rounded to 4 decimals, as FaceResult.to_dict does.
"""
import csv
import io
import json

from ..data.emotions import EMOTIONS

COLUMNS = ("file", "face", "x", "y", "w", "h", "label", "confidence", *EMOTIONS)
DECIMALS = 4


def face_rows(file_name: str, faces) -> list:
    """One dict per FaceResult of one picture, keyed by COLUMNS."""
    rows = []
    for index, face in enumerate(faces, 1):
        x, y, w, h = (int(v) for v in face.box)
        row = {"file": file_name, "face": index, "x": x, "y": y, "w": w, "h": h, "label": face.label,
               "confidence": round(float(face.confidence), DECIMALS)}
        row.update({e: round(float(face.scores[e]), DECIMALS) for e in EMOTIONS})
        rows.append(row)
    return rows


def results_rows(results) -> list:
    """Rows for many pictures: `results` is (file name, faces) pairs or objects with .name and .faces."""
    rows = []
    for item in results:
        name, faces = (item.name, item.faces) if hasattr(item, "faces") else item
        rows += face_rows(name, faces)
    return rows


def to_csv(rows) -> str:
    """CSV text with a header line of COLUMNS (a header alone when there are no rows)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_json(rows) -> str:
    """JSON text: a list of the rows as objects, keys in COLUMNS order."""
    return json.dumps([{k: row[k] for k in COLUMNS} for row in rows], indent=1) + "\n"
