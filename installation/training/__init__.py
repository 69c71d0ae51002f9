"""Training the project's own small StyleGAN1 G+D (the embedded default model), with no GPU needed to test it.

- `cli`: the `train` command (`add_train_parser`).
- `trainer`: `TrainConfig`, `Trainer`: progressive growing, resumable bit-identically from `checkpoint.pt`.
- `data`: training images from a uint8 .npz or an image folder; the deterministic data order.
- `faces`: the in-house procedural face drawer (licence-clean data for tests and CI).
- `evaluate`: `roc_auc` and `discriminator_auc`: how well D tells held-out images from G's samples.

Nothing here is imported by `installation` itself: torch loads only when training runs.
"""
