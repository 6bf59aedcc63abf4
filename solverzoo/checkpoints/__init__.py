"""Shipped weights (package data): digits_unet.pt (model digits-unet), digits_flow_unet.pt (model
digits-flow-unet, rectified flow) and digits_classifier.pt (the fd_digits_classifier feature extractor),
among others.  They are made by solverzoo train / train-classifier; see README.md, section "Learned models"."""
