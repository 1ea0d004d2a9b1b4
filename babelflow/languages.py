"""Language codes as gettext writes them: a base language, an optional region and an optional
modifier ("de", "pt_BR", "sr@latin", "ca@valencia"). Each code is its own target language (its own
`<2xx>` tag and data); what a code shares with its base language (metrics tokenisation, the
language-id model's label) is decided from `base_language`."""
from __future__ import annotations

import re

LANG_RE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?(@[a-z]{2,16})?$")


def base_language(lang: str) -> str:
    """The language without region or modifier: "pt_BR" -> "pt", "sr@latin" -> "sr"."""
    return lang.split("@")[0].split("_")[0]
