"""omni-supervised learning: selection of unlabeled faces and dataset distillation (Liu et al. 2021)"""
