"""Loss families; importing this package registers every loss."""
from harness.losses import classification, embedding, margin, regression  # noqa: F401
