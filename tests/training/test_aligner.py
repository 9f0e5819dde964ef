import torch

from bcemb.losses import multi_step_alignment, single_step_alignment
from bcemb.training import Aligner
from bcemb.transforms import LinearTransform


def test_aligner_loss_equals_the_loss_function(seed):
    # Aligner.loss runs the trainer's prepared term; value and gradients are the plain loss's.
    torch.manual_seed(seed)
    z_prev = torch.randn(12, 5)
    chain = [LinearTransform(4, 3), LinearTransform(5, 4)]  # B_1, B_2
    for name, fn, history in (("multi", multi_step_alignment, chain), ("single", single_step_alignment, [])):
        aligner = Aligner(z_prev, 7, chain=history, loss=name, lam=4.0)
        for ids in (None, torch.tensor([0, 3, 3, 11])):
            rows = 12 if ids is None else 4
            z = torch.randn(rows, 7, requires_grad=True)
            got = aligner.loss(z, ids)
            got_grads = torch.autograd.grad(got, (z, aligner.transform.weight))
            target = z_prev if ids is None else z_prev[ids]
            want = 4.0 * fn(z, target, aligner.transform, aligner.chain)
            want_grads = torch.autograd.grad(want, (z, aligner.transform.weight))
            assert torch.allclose(got, want, atol=1e-6, rtol=1e-5)
            for g, w in zip(got_grads, want_grads, strict=True):
                assert torch.allclose(g, w, atol=1e-6, rtol=1e-5)
