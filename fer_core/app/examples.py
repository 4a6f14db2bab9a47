"""The photos bundled with the app for a visitor who has none at hand (assets/examples/, each one's source and
licence in SOURCE.md there). The upload page reads them as (name, bytes), exactly as it reads an upload."""
from pathlib import Path

from ..errors import FerError

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "assets" / "examples"
EXAMPLE = "astronaut.jpg"  # Eileen Collins' NASA portrait (public domain), as scikit-image ships it


def example_photo(name: str = EXAMPLE) -> tuple:
    """(file name, bytes) of a bundled example photo."""
    path = EXAMPLES_DIR / name
    try:
        return path.name, path.read_bytes()
    except OSError as e:
        raise FerError(f"the example photo {path} is missing: restore assets/examples/ from the repository") from e
