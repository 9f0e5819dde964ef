import math

import numpy as np
import pytest
import torch

from bcemb.evaluation.metrics import alignment_error, recall_at_k, relative_change, roc_auc


def _brute_recall(user_emb, item_emb, tr_u, tr_i, va_u, va_i, k):
    recalls = []
    for u in sorted(set(va_u.tolist())):
        scores = (user_emb[u] @ item_emb.T).tolist()
        train = {int(i) for uu, i in zip(tr_u.tolist(), tr_i.tolist(), strict=True) if uu == u}
        ranked = sorted((i for i in range(len(scores)) if i not in train), key=lambda i: -scores[i])[:k]
        val = {int(i) for uu, i in zip(va_u.tolist(), va_i.tolist(), strict=True) if uu == u}
        recalls.append(len(val & set(ranked)) / len(val))
    return sum(recalls) / len(recalls)


@pytest.mark.parametrize("chunk", [3, 1000])
def test_recall_equals_brute_force(seed, chunk):
    g = torch.Generator().manual_seed(seed)
    n_users, n_items = 12, 30
    user_emb, item_emb = torch.randn(n_users, 5, generator=g), torch.randn(n_items, 5, generator=g)
    tr_u, tr_i = torch.randint(n_users, (60,), generator=g), torch.randint(n_items, (60,), generator=g)
    va_u, va_i = torch.randint(n_users, (25,), generator=g), torch.randint(n_items, (25,), generator=g)
    got = recall_at_k(user_emb, item_emb, tr_u, tr_i, va_u, va_i, (1, 5, 10), chunk_size=chunk)
    for k in (1, 5, 10):
        assert got[k] == pytest.approx(_brute_recall(user_emb, item_emb, tr_u, tr_i, va_u, va_i, k))


def test_recall_hand_case():
    # One user, items scored 3 > 2 > 1 > 0; item 0 is a training positive and is skipped.
    user = torch.tensor([[1.0]])
    items = torch.tensor([[3.0], [2.0], [1.0], [0.0]])
    got = recall_at_k(user, items, torch.tensor([0]), torch.tensor([0]), torch.tensor([0, 0]), torch.tensor([1, 3]), (1, 2, 3))
    assert got == {1: 0.5, 2: 0.5, 3: 1.0}
    with pytest.raises(ValueError, match="no validation edges"):
        recall_at_k(user, items, torch.tensor([0]), torch.tensor([0]), torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))


def test_roc_auc_and_alignment_error_by_hand():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.1, 0.2])))
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    assert alignment_error(a, b) == pytest.approx(2.5)  # (5 + 0) / 2
    with pytest.raises(ValueError, match="shape mismatch"):
        alignment_error(a, b[:, :1])
    assert relative_change(9.0, 12.0) == pytest.approx(-25.0)
