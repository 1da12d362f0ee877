"""The testbed: generated visual questions and the project's own trained miniature VLMs.

Example:
    >>> from vissparse.testbed import make_questions
    >>> make_questions(1)[0]["family"]
    'attribute'
"""

from vissparse.testbed.checkpoints import checkpoint_dir
from vissparse.testbed.questions import (
    ANSWERS,
    FAMILIES,
    export_questions,
    make_question,
    make_questions,
)

__all__ = [
    "ANSWERS",
    "FAMILIES",
    "checkpoint_dir",
    "export_questions",
    "make_question",
    "make_questions",
]
