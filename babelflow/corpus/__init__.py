"""The collect stage's library: every source type (gettext, aligned files, downloads, sacrebleu sets),
their fingerprints and provenance records, and the hash split into train/dev/test."""
