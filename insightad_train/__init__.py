"""insightad training: fit an autoencoder on good part images, evaluate it honestly, export it for the edge."""
