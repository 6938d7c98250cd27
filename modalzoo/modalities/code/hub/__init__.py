"""Code's transformers mapping (GraphCodeBERT as `RobertaForMaskedLM`); importing this package registers its
`hub.architecture.Architecture`. `transformers_inputs` turns a `code` batch into the inputs that model takes."""

from . import graphcodebert  # noqa: F401
