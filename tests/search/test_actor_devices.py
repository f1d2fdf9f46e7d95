"""search/actor.py: an actor that owns several GPUs spreads its model over all of them."""

from __future__ import annotations

from search.actor import actor_devices


def test_an_actor_spreads_over_the_gpus_ray_gave_it() -> None:
    assert actor_devices("cuda", [3, 5]) == ["cuda:0", "cuda:1"]  # renumbered by CUDA_VISIBLE_DEVICES
    assert actor_devices("cuda", ["2"]) == ["cuda"]  # one GPU (or a fraction of one): the model stays whole
    assert actor_devices("cpu", []) == ["cpu"]
