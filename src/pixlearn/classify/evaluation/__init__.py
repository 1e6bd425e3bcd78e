"""Scoring a trained classifier, and fitting what it decides with.

    interpretation.py  `Evaluation` (confusion matrices, conditional error rates, mistakes) and `evaluate`
    scores.py          balanced accuracy, macro-F1, calibration error, NLL, the reliability table
    calibration.py     temperature scaling, fitted on the validation split
    thresholds.py      operating points: two-class thresholds, abstaining, precision-recall curves
    curves.py          precision-recall, average precision, ROC and binned calibration error, in numpy
"""
