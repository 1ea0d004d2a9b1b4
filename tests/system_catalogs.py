"""The machine's German gettext catalogs, which some tests read as real UI text, and the one skip
condition for the tests that need them."""
from __future__ import annotations

from pathlib import Path

import pytest

GERMAN_CATALOGS = sorted(Path("/usr/share/locale/de/LC_MESSAGES").glob("*.mo"))
needs_german_catalogs = pytest.mark.skipif(
    not GERMAN_CATALOGS, reason="no German gettext catalogs under /usr/share/locale on this machine")
