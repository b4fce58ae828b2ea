"""Torch side: backbones, layer reading, image decoding, engines, fine-tuning modules; knows nothing of scikit-learn."""
