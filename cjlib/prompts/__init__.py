"""Prompt templates shipped as package data (read with :mod:`importlib.resources`)."""
