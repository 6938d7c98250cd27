"""preprocessor_config.json for transformers' `Wav2Vec2FeatureExtractor` (HubertModel, Wav2Vec2Model): raw
16-bit-range float waveforms at the model's rate, optionally normalised per clip (``do_normalize``, what the
zoo's ``data.normalize`` does). Group-norm front-ends are trained without an attention mask over zero padding,
so ``return_attention_mask`` follows the transformers convention of false for them."""

from __future__ import annotations

import json
from pathlib import Path


def write_wav2vec2_features(out: Path, sample_rate: int, normalize: bool, attention_mask: bool = False) -> Path:
    config = {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
              "sampling_rate": int(sample_rate), "padding_side": "right", "padding_value": 0.0,
              "do_normalize": bool(normalize), "return_attention_mask": bool(attention_mask)}
    path = Path(out) / "preprocessor_config.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path
