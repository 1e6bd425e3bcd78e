"""The first step of classifying: from folders (or a CSV) to labelled uint8 image sets.

    folders.py    folder trees, label rules (first / leaf / --group), label CSVs, train/test splits
    splits.py     which images validate each epoch and which give a run's final figures
    exclusion.py  `train --exclude FILE.csv`: files a CSV lists left out of every split
    csv_files.py  the CSVs a person hands pixlearn (label CSVs, --exclude lists), as spreadsheets write them
    decoding.py   decoding files into uint8 image sets in parallel; the data summary
    streaming.py  folders larger than memory: lazy decoding and the memory-mapped cache
    datasets.py   Fashion-MNIST from its published IDX files, in memory or as a folder tree
"""
