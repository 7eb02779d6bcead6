"""trainer: the lab side of spectrolite: data loading, augmentation, 1D CNNs against a PLS baseline, pruning, int8
quantisation, drift statistics, prediction intervals, reports and the model bundle writer (TensorFlow/Keras)."""
