"""Placeholder module: commands are added by later issues."""
