"""The machine-learning code alone: bill generator, data, network, training, evaluation, checkpoint.

Imports nothing from producer/ or workers/.
"""
