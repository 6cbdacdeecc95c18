"""Motion segmentation (Pathak et al. 2017): masks of independently moving pixels, synthetic ground truth, scoring."""
