"""Lets the test files import the shared oracle (reference.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
