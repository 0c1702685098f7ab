import dataclasses

import pytest
import torch

from dlc.config import CropsConfig
from dlc.data.multicrop import MultiCropDataset, collate_crops
from dlc.data.sources import ImageTable
from dlc.stages import data


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    from dlc import config
    from tests.conftest import micro_params

    cfg = config.parse(micro_params()).active.data
    cfg = dataclasses.replace(cfg, shapes=dataclasses.replace(cfg.shapes, n_images=40))
    folder = tmp_path_factory.mktemp("shapes")
    data.write_table(cfg, folder / "images.parquet", folder / "report.json")
    return ImageTable(folder / "images.parquet", "train")


CROPS = CropsConfig(global_size=32, global_scale=[0.5, 1.0], local_crops=3, local_size=16,
                    local_scale=[0.2, 0.5], flip=True, colour_jitter=0.8, grayscale=0.2,
                    blur=True, solarize=0.2, object_paste=0.0,
                    paste_foreground=[140, 180], paste_scale=[0.6, 1.6])


def test_views_have_their_sizes(table):
    globals_, locals_ = MultiCropDataset(table, CROPS, seed=0)[0]
    assert globals_.shape == (2, 3, 32, 32) and globals_.dtype == torch.float32
    assert locals_.shape == (3, 3, 16, 16)


def test_sample_numbers_fix_image_and_crops(table):
    dataset = MultiCropDataset(table, CROPS, seed=0)
    before = torch.get_rng_state()
    a, b = dataset[5], MultiCropDataset(table, CROPS, seed=0)[5]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(torch.get_rng_state(), before)  # the training stream is untouched
    assert not torch.equal(dataset[6][0], a[0])
    assert not torch.equal(MultiCropDataset(table, CROPS, seed=1)[5][0], a[0])
    # each epoch visits every image once, in a new order
    n = len(table)
    first = [dataset.image_index(k) for k in range(n)]
    second = [dataset.image_index(k) for k in range(n, 2 * n)]
    assert sorted(first) == sorted(second) == list(range(n)) and first != second


def test_unreadable_images_are_dropped_and_counted(table):
    dataset = MultiCropDataset(table, CROPS, seed=0)
    broken = dataset.image_index(1)
    original, table._pngs[broken] = table._pngs[broken], b"not a png"
    try:
        items = [dataset[k] for k in range(4)]
        assert items[1] is None
        globals_, locals_, dropped = collate_crops(items)
        assert globals_.shape[0] == 3 and dropped == 1
        with pytest.raises(ValueError, match="unreadable"):
            table.raw(broken)
    finally:
        table._pngs[broken] = original
