"""Grammar autoencoders: the model and its presets, grammar training, encoding / decoding
latents to strings, and generation metrics."""
