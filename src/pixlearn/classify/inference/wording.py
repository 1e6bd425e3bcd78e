"""What the probabilities of a head may be read as, in CSV notes, gallery titles and captions."""

from __future__ import annotations

from collections.abc import Mapping


def head_note(head: str) -> str:
    """What the probabilities of a head mean, for captions and CSV readers ("" for softmax)."""
    if head == "sigmoid":
        return "sigmoid head: each class's probability is its own output, so they need not sum to 1"
    return ""


def gallery_title(title: str, head: str) -> str | tuple[str, ...]:
    """A gallery's title, with a second line for the sigmoid head: its probabilities need not sum to 1."""
    note = head_note(head)
    return (title, note) if note else title


def csv_note(head: str) -> dict[str, str]:
    """The `note` column of the prediction CSVs: what the p_CLASS columns mean ({} for softmax, which needs none).

    A column rather than a comment line: pandas and spreadsheets read it as one more field.

    >>> csv_note("sigmoid")
    {'note': "sigmoid head: each class's probability is its own output, so they need not sum to 1"}
    """
    note = head_note(head)
    return {"note": note} if note else {}


CAPTION_CLASSES = 3  # more than this many classes: the caption names the most probable ones


def probability_caption(probs: Mapping[str, float]) -> str:
    """`city:0.43 / nature:0.57`: the label the seed writes under each image of a gallery; with
    more than three classes the three most probable, then an ellipsis (ten would not fit under a
    thumbnail, and would shrink it).

    >>> probability_caption({"city": 0.431, "nature": 0.569})
    'city:0.43 / nature:0.57'
    >>> probability_caption({str(d): p for d, p in enumerate([0.01, 0.9, 0.05, 0.04, 0, 0, 0, 0, 0, 0])})
    '1:0.90 / 2:0.05 / 3:0.04 / ...'
    """
    if len(probs) <= CAPTION_CLASSES:
        return " / ".join(f"{c}:{p:.2f}" for c, p in probs.items())
    top = sorted(probs.items(), key=lambda item: -item[1])[:CAPTION_CLASSES]
    return " / ".join(f"{c}:{p:.2f}" for c, p in top) + " / ..."
