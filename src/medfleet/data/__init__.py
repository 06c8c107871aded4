"""Data layer of medfleet: image and volume IO, datasets, transforms, phantoms and catalogues.

Submodules are imported on demand (``from medfleet.data.io import read_image``) so that
importing :mod:`medfleet.data` stays cheap and pulls in no imaging library by itself.
"""
