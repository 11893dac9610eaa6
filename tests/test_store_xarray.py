"""Every finished store opens in xarray by name: splits as Datasets, named dims, ids and labels as coords."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

from tests.builders import STAGE_SETS, build_stage, toy_config

KINDS = {  # store → (variable, its dims)
    "prepare": ("points", ("object", "point", "xyz")),
    "render": ("image", ("object", "view", "row", "col")),
    "cache-features": ("feature", ("object", "view", "channel", "row", "col")),
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xarray")
    return build_stage("cache-features", toy_config(tmp, STAGE_SETS), tmp / "data", "toys")


def open_split(path, split):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = xr.open_zarr(path, group=split)
    assert [str(w.message) for w in caught] == []  # no "consolidated metadata" warning, nor any other
    return ds


@pytest.mark.parametrize("stage", list(KINDS))
def test_each_split_opens_as_a_dataset_with_ids_and_labels_as_coordinates(stores, stage):
    path = stores[stage]
    assert "consolidated_metadata" in json.loads((path / "zarr.json").read_text())
    points = zarr.open_group(str(stores["prepare"]), mode="r")
    for split, n in (("train", 4), ("test", 2)):
        ds = open_split(path, split)
        name, dims = KINDS[stage]
        assert ds[name].dims == dims and ds.sizes["object"] == n
        assert set(ds.coords) == {"id", "label"} and ds["id"].dims == ("object",)
        assert list(ds["id"].values) == list(points[f"{split}/id"][:])  # the same objects, same rows
        assert (ds["label"].values == points[f"{split}/label"][:]).all()
        row = n - 1
        assert ds[name].isel(object=row).coords["id"].values == points[f"{split}/id"][row]
        stored = zarr.open_group(str(path), mode="r")[f"{split}/{name}"][row]
        np.testing.assert_array_equal(
            ds[name].isel(object=row).values, stored
        )  # one value read through xarray
    assert "train" in points.attrs["splits"]


def test_ids_select_objects(stores):
    ds = open_split(stores["cache-features"], "train").set_index(object="id")
    assert ds.sel(object="cone/cone_train1")["saliency"].shape == (3, 14, 14)


def test_a_writer_drops_the_consolidated_copy_and_finish_writes_it_again(stores):
    from pipeline.storage.store import StoreWriter

    path = stores["render"]
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    writer = StoreWriter(path, attrs)
    writer.update_attrs({"complete": False})
    assert "consolidated_metadata" not in json.loads((path / "zarr.json").read_text())
    writer.finish()
    assert "consolidated_metadata" in json.loads((path / "zarr.json").read_text())
    assert open_split(path, "test")["image"].sizes["object"] == 2
