"""Text's transformers mappings; importing this package registers their `hub.architecture.Architecture`s."""

from . import bert  # noqa: F401
