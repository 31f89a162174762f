"""ML and data room: Kermany parsing, image checks, splits, datasets, models, training, scores."""
