"""Audio's transformers mappings; importing this package registers their `hub.architecture.Architecture`s
(HubertModel; ASTModel for CLAP's audio tower)."""

from . import ast, hubert  # noqa: F401
