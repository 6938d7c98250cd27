"""Graph models and the Hub: transformers 5 has no graph transformer class, so `--format hf` refuses a graph
model with the reason, and its modalzoo-format export gets the graph task's Hub metadata and usage snippet."""

from __future__ import annotations

from ....errors import ModalzooError
from ....hub.architecture import Architecture, register

REFUSAL = ("transformers has no class for a graph transformer: Graphormer was deprecated in v4.40 and removed with "
           "the other deprecated models in transformers 5, and no other native class takes per-head structural "
           "attention biases with degree and virtual-token embeddings. Export with --format modalzoo: "
           "modalzoo.from_pretrained loads it, and the folder carries the graph schema and the featuriser settings")

ZOO_USAGE = '''import modalzoo
from modalzoo.modalities.graph.inference import embed_molecules

model = modalzoo.from_pretrained("{model_id}")      # a PretrainModel in eval mode; its recipe: model.recipe
vectors = embed_molecules("{model_id}", ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O"])   # needs RDKit
print(vectors.shape)   # [3, hidden]: mean-pooled atom features, batched as in training'''


def _matches(model: dict) -> bool:
    streams = model.get("streams") or {}
    return any(((s or {}).get("embedding") or {}).get("name") == "graph" for s in streams.values())


def _refuse(*_args, **_kwargs):
    raise ModalzooError(REFUSAL)


register(Architecture(
    name="graphormer", model_type="graphormer", model_class="GraphormerModel", auto_class="AutoModel",
    config_class="GraphormerConfig", matches=_matches,
    needs="nothing in transformers 5 (refused with the reason; --format modalzoo exports any graph model)",
    hf_config=_refuse, to_hf=_refuse, to_zoo=_refuse, compare=_refuse,
    pipeline_tag="graph-ml", tags=("graph-ml", "graph-transformer", "graphormer", "chemistry"),
    usage=ZOO_USAGE, zoo_usage=ZOO_USAGE))
