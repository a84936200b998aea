"""Vision: frame sources, the simulated world, preprocessing, networks, training, export and the detector.

Nothing here imports another package of this project. torch is imported only by the modules that
train or define networks (`vision.networks`, `vision.training`, `vision.export`), never by the runtime
path (`vision.preprocess`, `vision.detector`, `vision.sources`, `vision.sim`).
"""
