"""Image benchmarks (MNIST, Fashion-MNIST, SVHN, CelebA) through the shared GMM-DAE regularizer."""
