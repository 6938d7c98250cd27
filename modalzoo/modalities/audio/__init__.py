"""Audio: clips in shards (`audio` dataset), the waveform and fbank-patch front-ends, HuBERT's masked unit
prediction, label sets of units, spoken-word and sound-caption sample data, `pack-audio`; `reports` and `hub/`
load on demand."""

from . import dataset, fbank, hubert, pack, samples, waveform  # noqa: F401  (registering modules)
