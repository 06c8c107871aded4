"""medfleet: multi-task, multi-site medical imaging AI.

Importing the top-level package is cheap: it pulls in neither torch nor any
model code, so evaluation-only installs work without deep-learning packages.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
