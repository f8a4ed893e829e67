"""The numeric core: integer geometry, convolution engines, array ops and pooling (numpy, scipy, OpenCV; no I/O)."""
