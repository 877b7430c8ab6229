"""The Loihi backends: a lava-nc program, its core mapping, and runs on Lava in its own environment."""
