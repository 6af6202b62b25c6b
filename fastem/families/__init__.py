"""Mixture families: one module per component distribution (see ``base.py`` for the protocol)."""
