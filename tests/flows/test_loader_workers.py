"""DataLoader worker processes forked inside a Prefect flow run survive to the end."""

from __future__ import annotations

import torch
from prefect import flow

from colorization.data import LoaderConfig, make_loader


@flow
def _count_with_workers(dataset: str) -> int:
    config = LoaderConfig(batch_size=4, shuffle=False, augment=False, num_workers=2)
    return sum(l_norm.shape[0] for l_norm, _ in make_loader(dataset, "train", config))


def test_worker_processes_under_a_flow_run(prefect_api, tiny_dataset):
    # Fork after Prefect's log and event services have started: the case that failed.
    assert _count_with_workers(tiny_dataset) == 32
    config = LoaderConfig(batch_size=8, shuffle=False, augment=False, num_workers=2)
    batches = list(make_loader(tiny_dataset, "val", config))
    assert torch.cat([b[0] for b in batches]).shape == (8, 1, 32, 32)
