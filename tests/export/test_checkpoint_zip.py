"""A zip archive that torch.save did not write (a dataset, a bundle zipped up) is named as such,
not with torch's `[enforce fail at inline_container.cc]` (issue 21.6)."""

import zipfile

import pytest
from support.export_fixtures import TINY

from insid3.errors import CheckpointError
from insid3.export.checkpoint import load_checkpoint


def test_a_zip_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("photos/a.jpg", b"not a tensor")
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path, TINY)
    assert str(raised.value) == (f"{path} is a zip archive but not a PyTorch checkpoint "
                                 "(torch.save writes a data.pkl in it)")
