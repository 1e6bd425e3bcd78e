"""The data check (`pixlearn check`): duplicates and train/test leaks, likely label errors, odd images.

inspection.py        CheckConfig, the check's phases and its directory (check.json, the CSVs, check.html)
embeddings.py        the features compared: pretrained, a trained run's, or plain pixels (cached)
duplicates.py        exact and near duplicates, leaks between splits first
label_issues.py      k-fold heads on the features, then cleanlab's confident learning
label_set_issues.py  with many labels per image: each (image, label) pair, missing or wrong
image_issues.py      tiny, extreme, constant, dark, bright, blurry or outlying images; class balance
"""
