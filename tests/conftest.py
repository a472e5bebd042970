"""Hypothesis profiles: CI runs a fixed sequence of examples (a red CI run is then reproducible
and never a roll of the dice); elsewhere every run explores new ones."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))
