import math

import pytest
import torch

from dlc.train import ssl
from dlc.train.ema import update_ema


def test_koleo_on_hand_made_points():
    # three unit vectors at 0, 90 and 180 degrees: every nearest neighbour is sqrt(2) away
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert ssl.koleo_loss(points).item() == pytest.approx(-0.5 * math.log(2), abs=1e-6)
    # scale does not matter (normalised), and a duplicate point is pulled apart hard
    assert ssl.koleo_loss(3 * points).item() == pytest.approx(-0.5 * math.log(2), abs=1e-6)
    assert ssl.koleo_loss(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])) > 10


def test_dino_loss_on_hand_made_inputs():
    # teacher: certain of prototype 0 in view 0, of prototype 1 in view 1
    teacher = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    # student logits with temperature 1: softmax([log 3, 0]) = [3/4, 1/4]
    s = torch.tensor([[math.log(3.0), 0.0]])
    students = [s, s, s]  # global 0, global 1, one local crop
    # pairs (i != j): (t1, s0), (t0, s1), (t0, s2), (t1, s2)
    expected = (-math.log(1 / 4) - math.log(3 / 4) - math.log(3 / 4) - math.log(1 / 4)) / 4
    assert ssl.dino_loss(students, teacher, student_temp=1.0).item() == pytest.approx(expected)
    # at temperature 0.5 the logits double: softmax([2 log 3, 0]) = [9/10, 1/10]
    expected = (-2 * math.log(1 / 10) - 2 * math.log(9 / 10)) / 4
    assert ssl.dino_loss(students, teacher, student_temp=0.5).item() == pytest.approx(expected)


def test_teacher_centering_and_temperature():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    center = torch.tensor([1.0, -1.0])
    probs = ssl.teacher_probabilities(logits, center, temp=0.5, center_momentum=0.9)
    expected = torch.softmax((logits - torch.tensor([1.0, -1.0])) / 0.5, -1)
    assert torch.allclose(probs, expected)
    # center <- 0.9 * center + 0.1 * batch mean ([1, 0])
    assert torch.allclose(center, torch.tensor([0.9 * 1 + 0.1 * 1, 0.9 * -1 + 0.1 * 0]))


def test_sinkhorn_knopp_on_a_hand_made_case():
    # exp(logits) = [[4, 1], [1, 1]]: the doubly stochastic scaling keeps the cross ratio
    # q11 q22 / (q12 q21) = 4, so q = [[x, 1 - x], [1 - x, x]] with x / (1 - x) = 2
    logits = torch.log(torch.tensor([[4.0, 1.0], [1.0, 1.0]]))
    targets = ssl.sinkhorn_knopp(logits, temp=1.0, iterations=100)
    assert torch.allclose(targets, torch.tensor([[2 / 3, 1 / 3], [1 / 3, 2 / 3]]), atol=1e-6)
    # the temperature sharpens first: exp(logits / 0.5) = [[16, 1], [1, 1]], x / (1 - x) = 4
    targets = ssl.sinkhorn_knopp(logits, temp=0.5, iterations=100)
    assert torch.allclose(targets[0], torch.tensor([0.8, 0.2]), atol=1e-6)


def test_sinkhorn_knopp_spreads_the_batch_over_the_prototypes():
    logits = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
    logits[:, 0] += 2  # every image prefers prototype 0
    targets = ssl.sinkhorn_knopp(logits, temp=0.5, iterations=3)
    assert torch.allclose(targets.sum(1), torch.ones(12))  # each image: a distribution
    converged = ssl.sinkhorn_knopp(logits, temp=0.5, iterations=500)
    assert torch.allclose(converged.sum(0), torch.full((4,), 3.0), atol=1e-4)  # B / K each
    # and only rescales exp(logits / temp) by a factor per row and per column
    log_ratio = converged.log() - logits / 0.5
    rank_one = log_ratio - log_ratio[:, :1] - log_ratio[:1] + log_ratio[:1, :1]
    assert rank_one.abs().max() < 1e-3
    # where centring still lets prototype 0 take most of the batch
    centred = ssl.teacher_probabilities(logits, torch.zeros(4), 0.5, 0.9)
    assert centred.sum(0)[0] > 8 > 4 > targets.sum(0)[0]


def test_ibot_loss_averages_per_image():
    mask = torch.tensor([[True, True, False], [False, False, True], [False, False, False]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # 3 masked patches
    student = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0], [0.0, 0.0]])
    image0 = (-math.log(3 / 4) - math.log(1 / 2)) / 2
    image1 = -math.log(1 / 2)
    loss = ssl.ibot_loss(student, teacher, mask, student_temp=1.0)
    assert loss.item() == pytest.approx((image0 + image1) / 2)


def test_nt_xent_on_orthonormal_pairs():
    # Each view equals its partner and is orthogonal to the other images: every anchor scores
    # 1 / t against its partner and 0 against the 2B - 2 = 4 others.
    views = torch.eye(3, 5) * 2.0  # the loss normalises
    t = 0.2
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 4))
    assert ssl.nt_xent(views, views, t).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_matches_a_direct_sum():
    torch.manual_seed(0)
    first, second = torch.randn(4, 6), torch.randn(4, 6)
    z = torch.nn.functional.normalize(torch.cat([first, second]), dim=-1)
    t, total = 0.5, 0.0
    for i in range(8):
        partner = (i + 4) % 8
        others = sum(math.exp(z[i] @ z[j] / t) for j in range(8) if j != i)
        total -= math.log(math.exp(z[i] @ z[partner] / t) / others)
    assert ssl.nt_xent(first, second, t).item() == pytest.approx(total / 8, rel=1e-5)


def test_patch_mask_counts():
    generator = torch.Generator().manual_seed(0)
    mask = ssl.random_patch_mask(2000, 64, 0.5, (0.25, 0.25), generator)
    counts = mask.sum(1)
    assert set(counts.tolist()) == {0, 16}            # a quarter of the patches, or none
    assert abs((counts > 0).float().mean().item() - 0.5) < 0.05


def test_schedules_hit_their_ends():
    assert ssl.cosine(0, 100, 0.992, 1.0) == pytest.approx(0.992)
    assert ssl.cosine(50, 100, 0.992, 1.0) == pytest.approx(0.996)
    assert ssl.cosine(100, 100, 0.992, 1.0) == pytest.approx(1.0)
    assert ssl.warmup_cosine(0, 100, 1.0, 0.1, 10) == 0.0
    assert ssl.warmup_cosine(5, 100, 1.0, 0.1, 10) == pytest.approx(0.5)
    assert ssl.warmup_cosine(10, 100, 1.0, 0.1, 10) == pytest.approx(1.0)
    assert ssl.warmup_cosine(100, 100, 1.0, 0.1, 10) == pytest.approx(0.1)
    assert ssl.teacher_temperature(0, 0.04, 0.07, 30) == pytest.approx(0.04)
    assert ssl.teacher_temperature(15, 0.04, 0.07, 30) == pytest.approx(0.055)
    assert ssl.teacher_temperature(99, 0.04, 0.07, 30) == pytest.approx(0.07)


def test_teacher_update_is_an_exponential_moving_average():
    student, teacher = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = teacher.weight.detach().clone()
    update_ema(teacher, student, 0.992)
    assert torch.allclose(teacher.weight, 0.992 * before + 0.008 * student.weight)
    update_ema(teacher, student, 1.0)  # momentum 1 at the end: the teacher is frozen
    assert torch.allclose(teacher.weight, 0.992 * before + 0.008 * student.weight)
