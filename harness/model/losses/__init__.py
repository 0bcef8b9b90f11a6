"""Loss families; importing this package registers every loss."""
from harness.model.losses import classification, embedding, margin, penalty, regression  # noqa: F401
