"""Evaluation of trained trunks: linear and k-NN probes, the motion head as a segmenter."""
