"""Input and output: image decoding, inputs and URLs, the manifest, colour, and every output format (writers)."""
