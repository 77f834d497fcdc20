"""KneeAlign training module: synthetic radiographs, datasets, losses, augmentation, fitting and evaluation.

May import ``model``; ``model`` and ``dicomnode`` never import this package.
"""
