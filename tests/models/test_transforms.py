import io

import numpy as np
import torch
from PIL import Image

from models.data import decode
from models.synth import encode_jpeg, render_scan
from models.transforms import PreprocessParams, normalize, preprocess_image, to_uint8


def test_any_input_size_gives_the_model_size():
    params = PreprocessParams()
    for size in [(640, 288), (600, 270), (1280, 576), (97, 41)]:
        x = preprocess_image(Image.new("RGB", size, (10, 200, 30)), params)
        assert x.shape == (3, params.height, params.width)
        assert x.dtype == torch.float32


def test_grey_and_rgba_inputs_are_converted():
    params = PreprocessParams()
    assert preprocess_image(Image.new("L", (640, 288), 128), params).shape == (3, params.height, params.width)
    assert preprocess_image(Image.new("RGBA", (640, 288)), params).shape == (3, params.height, params.width)


def test_normalize_maps_mean_to_zero():
    params = PreprocessParams(mean=(0.2, 0.4, 0.6), std=(0.5, 0.5, 0.5))
    x = torch.tensor([0.2, 0.4, 0.6]).mul(255).round().to(torch.uint8).view(3, 1, 1)
    assert normalize(x, params).abs().max() < 0.01


def test_training_path_equals_serving_path():
    """Training caches decode() -> uint8, then normalizes per batch; serving calls preprocess_image."""
    params = PreprocessParams()
    image, ann = render_scan(7)
    jpeg = encode_jpeg(image, ann["capture"]["jpeg_quality"])
    train_x = normalize(torch.from_numpy(decode(jpeg, params)), params)
    serve_x = preprocess_image(Image.open(io.BytesIO(jpeg)).convert("RGB"), params)
    assert torch.equal(train_x, serve_x)


def test_params_round_trip():
    p = PreprocessParams(height=64, width=128, mean=(0.1, 0.2, 0.3), std=(0.3, 0.2, 0.1), resample="bicubic")
    assert PreprocessParams.from_dict(p.to_dict()) == p


def test_to_uint8_keeps_pixels_at_model_size():
    params = PreprocessParams(height=4, width=6)
    arr = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    out = to_uint8(Image.fromarray(arr), params)
    assert torch.equal(out, torch.from_numpy(arr).permute(2, 0, 1))
