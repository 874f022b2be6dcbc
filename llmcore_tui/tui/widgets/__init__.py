"""Widgets and rendering helpers shared by screens."""
