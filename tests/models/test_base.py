import pytest
import torch
from torch import nn

from bcemb.models import MODELS, EmbeddingModel, SageConfig, SageEncoder, build_model, load_model, save_model


class _TinyMLP(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.net = nn.Linear(4, dim)

    def forward(self, x):
        return self.net(x)

    def to_config(self):
        return {"model": "test-tiny-mlp", "dim": self.dim}

    @classmethod
    def from_config(cls, config):
        return cls(int(config["dim"]))


MODELS.register("test-tiny-mlp")(_TinyMLP)


def test_sage_is_an_embedding_model_and_round_trips_through_the_registry(tmp_path):
    model = SageEncoder(SageConfig(2, 8, {"genre": 5}))
    assert isinstance(model, EmbeddingModel)
    assert model.to_config()["model"] == "sage"
    rebuilt = build_model(model.to_config())
    assert isinstance(rebuilt, SageEncoder) and rebuilt.config == model.config
    save_model(tmp_path / "m.safetensors", model)
    loaded = load_model(tmp_path / "m.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_any_registered_model_saves_and_loads(tmp_path):
    model = _TinyMLP(6)
    assert isinstance(model, EmbeddingModel)
    save_model(tmp_path / "m.safetensors", model)
    loaded = load_model(tmp_path / "m.safetensors")
    x = torch.randn(3, 4)
    assert isinstance(loaded, _TinyMLP) and torch.equal(loaded(x), model.eval()(x))


def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'nope'.*sage"):
        build_model({"model": "nope", "dim": 3})


def test_files_without_a_model_name_are_graphsage():
    cfg = SageConfig(1, 4, {}).to_dict()  # the format written before models named themselves
    assert isinstance(build_model(cfg), SageEncoder)
