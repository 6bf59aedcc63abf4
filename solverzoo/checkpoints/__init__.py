"""Shipped weights (package data): digits_unet.pt (model digits-unet) and digits_classifier.pt
(the fd_digits_classifier feature extractor).  Both are made by solverzoo train / train-classifier;
see README.md, section "Learned models"."""
