"""A model's tokenizer, and the token id its arrays are padded with."""

from __future__ import annotations

from autopeft.assets.models import ModelRef
from autopeft.errors import AssetError


def load_tokenizer(model: ModelRef):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model.location, trust_remote_code=model.trust_remote_code, revision=model.revision)
    except (OSError, ValueError) as e:
        raise AssetError(f"model '{model.name}': cannot load its tokenizer: {str(e).splitlines()[0]}") from None


def pad_id(tokenizer) -> int:
    """The tokenizer's pad token, else its end-of-sequence token (decoders often have no pad), else 0."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
