"""`--push REPO_ID`: upload an export folder to the Hugging Face Hub with `huggingface_hub`.

The token comes from where `huggingface_hub` always looks (``HF_TOKEN``, ``huggingface-cli login``). The
folder is written and verified before anything is sent, so a failed push leaves it intact to retry.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModalzooError

# Only what an export writes: weights are safetensors, never pickles.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.md", "*.png", "*.txt", "*.model"]


def push_folder(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Create ``repo_id`` if needed and upload ``folder``; returns the repo URL."""
    from huggingface_hub import HfApi
    api = HfApi()
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                          allow_patterns=ALLOW_PATTERNS, commit_message="Upload modalzoo export")
    except Exception as err:     # network, auth, permissions: all leave the local export as it is
        raise ModalzooError(f"push to {repo_id} failed ({type(err).__name__}: {err}); the export is intact at "
                            f"{folder}: retry with `huggingface-cli upload {repo_id} {folder}` or "
                            f"`modalzoo export ... --push {repo_id}` once the Hub is reachable and you are "
                            f"logged in") from None
    return str(getattr(repo, "url", f"https://huggingface.co/{repo_id}"))
