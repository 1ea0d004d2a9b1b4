"""Reserved token ids and symbols shared by the tokenizer, the models and the decoder."""
from __future__ import annotations

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3


def lang_tag(lang: str) -> str:
    """The source-side symbol that selects the output language, e.g. `<2de>`."""
    return f"<2{lang}>"
