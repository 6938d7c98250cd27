"""Audio made at data-build time: speech from eSpeak NG (`espeak.py`, its library and voices from the
``espeakng-loader`` wheel: ``pip install modalzoo[speech]``; flite where its CLI is installed) and synthetic
sound events, mixtures and augmentation in numpy/torchaudio (`events.py`). Nothing here is imported when a
model is built or trained."""
