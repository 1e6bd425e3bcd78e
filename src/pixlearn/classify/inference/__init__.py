"""Applying a trained classifier: logits, probabilities, labels, features, predictions and the ONNX file.

    forward.py     the one inference loop: the inference copy of a network, TTA, cache-sized batches
    heads.py       each head's loss and its probabilities (the one logits-to-probabilities conversion)
    decisions.py   which label a probability becomes: the fitted threshold, abstaining
    wording.py     what a head's probabilities mean, in CSV notes, titles and captions
    features.py    the frozen-feature pass and its cache (training with --freeze, the check)
    prediction.py  `Predictor` and `predict`: new images to labels and a CSV
    onnx.py        `export`: model.onnx, checked against pixlearn's own probabilities
"""
