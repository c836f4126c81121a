"""TEMPORARY (helper F verification) — the lead owns this file's real version."""

from graphs.support import build

graph = build()[0].compile()
