"""Textual Bindings from the keymap data."""

from __future__ import annotations

from textual.binding import Binding

from .keymap import Key


def bindings(keys: tuple[Key, ...]) -> list[Binding]:
    return [
        Binding(k.keys, k.action, k.description, show=k.show, priority=k.priority, id=k.id)
        for k in keys
    ]
