"""CLAP reports: zero-shot audio classification on the held-out split with the dataset's prompt templates
(classes.json), audio->text and text->audio recall@1/@5 over its captions, and the confusion-matrix PNG.

Applies to a contrastive target over one audio stream (a `fbank_patch` or `waveform_conv` embedding) and one
text (`token`) stream of a run whose data has captions; zero-shot needs class names too. The computation is
`evaluation/zero_shot.py`'s, shared with the image zero-shot report. eval.json: ``zero_shot_top1``,
``zero_shot_chance`` (1 / classes), ``confusion_matrix_png``, ``audio_to_text_recall@1|5``,
``text_to_audio_recall@1|5``, ``retrieval_items``.
"""

from __future__ import annotations

from ...evaluation.run import LoadedRun, Report
from ...evaluation.zero_shot import evaluate_contrastive
from .hub.ast import AUDIO_EMBEDDINGS


def audio_text_streams(run: LoadedRun, target_name: str) -> tuple[str, str] | None:
    """(audio stream, text stream) of a contrastive target over one of each, else None. Never raises."""
    target = run.model.targets[target_name]
    if getattr(target, "registered_name", None) != "contrastive":
        return None
    kinds = {n: getattr(run.model.streams[n].embedding, "registered_name", None) for n in target.cfg.streams}
    audio = [n for n, k in kinds.items() if k in AUDIO_EMBEDDINGS]
    text = [n for n, k in kinds.items() if k == "token"]
    return (audio[0], text[0]) if len(audio) == 1 and len(text) == 1 else None


def _has_captions(run: LoadedRun) -> bool:
    return any(getattr(f, "kind", None) == "text" for f in run.data_ctx.fields.values())


def clap_applies(run: LoadedRun, target_name: str) -> bool:
    return audio_text_streams(run, target_name) is not None and _has_captions(run)


def clap_report(run: LoadedRun, target_name: str, batches: int) -> dict:
    audio, text = audio_text_streams(run, target_name)
    summary = evaluate_contrastive(run, target_name, audio, text, item="audio", items="clips",
                                   zero_shot=bool(run.data_ctx.get("classes")), retrieval=True,
                                   max_batches=batches)
    lines = [""] + [f"  {k:<32} {v:.4f}" if isinstance(v, float) else f"  {k:<32} {v}" for k, v in summary.items()]
    return {"summary": summary, "lines": lines}


REPORTS = [Report("CLAP zero-shot audio classification and audio-text retrieval", clap_applies, clap_report)]
