"""The layer language: layer kinds (plan + forward), specs, presets, ONNX graphs, weights files and plan trees."""
