"""Test helpers that ship with the package so notebooks and CI can use them too."""
