"""The one training loop (`fit`), domain-free: it sees a model, batches and a validation function."""
