"""watchd: watch folders and expand every image dropped in them with the PicWish API."""

__version__ = "0.1.0"
