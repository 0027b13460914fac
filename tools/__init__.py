"""Checks a maintainer runs from the checkout (not part of the installed package)."""
