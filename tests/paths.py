"""Where the suite finds the repository and its fixtures, wherever a test file sits."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
