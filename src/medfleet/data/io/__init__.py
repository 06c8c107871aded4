"""Read and write medical images with their spacing.

Formats: NIfTI, DICOM (files and series folders), PNG/JPEG/TIFF/BMP, NPY/NPZ, HDF5 and video.

Every reader returns :class:`ImageData` (numpy array, spacing in mm per spatial axis, metadata)
and every failure raises :class:`medfleet.errors.ImageReadError` naming the file. References
may carry options after ``#``: ``clip.mp4#frame=12``, ``data.npz#key=images&index=5``,
``data.h5#dataset=img&index=3``. Imaging libraries are imported only when a file of their
format is read or written.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from medfleet.data.io import read_image, write_nifti
    >>> p = write_nifti(pathlib.Path(tempfile.mkdtemp()) / "v.nii.gz",
    ...                 np.zeros((8, 8, 3), np.int16), (0.8, 0.8, 5.0))
    >>> img = read_image(p)
    >>> img.array.shape, img.spacing, img.meta["format"]
    ((8, 8, 3), (0.8, 0.8, 5.0), 'nifti')
"""

from medfleet.data.io.common import ImageWriteError
from medfleet.data.io.dicom_series import read_dicom_series
from medfleet.data.io.dispatch import detect_format, read_header, read_image
from medfleet.data.io.image_data import ImageData
from medfleet.data.io.nifti import write_nifti
from medfleet.data.io.raster import write_png
from medfleet.data.io.refs import parse_image_ref

__all__ = [
    "ImageData",
    "ImageWriteError",
    "detect_format",
    "parse_image_ref",
    "read_dicom_series",
    "read_header",
    "read_image",
    "write_nifti",
    "write_png",
]
