"""Running: jobs, the layer-stack executor, one image through a job, the batch loop and its back ends."""
