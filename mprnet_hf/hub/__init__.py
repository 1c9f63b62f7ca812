"""The Hugging Face Hub side: model cards, converting the official weights, the remote code model folders carry,
and where the bundled checkpoints are."""

from .model_cards import official_model_card, save_model_card, trained_model_card

__all__ = ["official_model_card", "save_model_card", "trained_model_card"]
