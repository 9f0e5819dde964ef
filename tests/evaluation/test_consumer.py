import numpy as np
import torch

from bcemb.data.consumer_tasks import TaskData
from bcemb.evaluation.consumer import fit_consumer, task_inputs
from bcemb.evaluation.metrics import roc_auc
from bcemb.experiments.config import ConsumerConfig


def test_consumer_learns_a_planted_signal(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(600, 8, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    cfg = ConsumerConfig(epochs=40, patience=8, batch_size=128)
    model, val_auc = fit_consumer(x[:400], y[:400], x[400:500], y[400:500], hidden=32, dropout=0.0, config=cfg, seed=seed)
    with torch.no_grad():
        test_auc = roc_auc(y[500:], model(x[500:]))
    assert val_auc > 0.85 and test_auc > 0.85


def test_task_inputs_picks_rows():
    user_emb = torch.arange(6.0).reshape(3, 2)
    item_emb = 10 + torch.arange(8.0).reshape(4, 2)
    users = TaskData("user_activity", "user", 0, np.array([2, 0]), np.array([1, 0]))
    edges = TaskData("edge_rating", "edge", 0, np.array([[1, 3]]), np.array([1]))
    assert torch.equal(task_inputs(users, user_emb, item_emb), user_emb[[2, 0]])
    assert torch.equal(task_inputs(edges, user_emb, item_emb), torch.tensor([[2.0, 3.0, 16.0, 17.0]]))
