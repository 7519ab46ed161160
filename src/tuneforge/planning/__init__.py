"""Know before training: the memory a run needs, advice on its settings, and sweeps.

`shape` counts parameters from a model's config.json without loading weights, `memory`
turns a run config into a peak-memory estimate and the changes that would make it fit,
`advice` checks hyper-parameters against rules of thumb, `report` puts the three together
for ``tuneforge plan``, and `sweep` runs a grid of short trainings and ranks them.
"""
