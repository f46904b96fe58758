"""Text classification on Hugging Face data sets or local files (see README.md in this folder)."""

from tasks.text.task import TextClassification

__all__ = ["TextClassification"]
