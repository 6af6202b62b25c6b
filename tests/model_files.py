"""Test helper: edit the JSON header of a fastem model file (``.npz``) in place, keeping its arrays."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable

import numpy as np


def rewrite_header(path, edit: Callable[[dict], None]) -> None:
    """Load ``path``'s header, let ``edit`` change it in place, write it back with the same arrays."""
    with np.load(path, allow_pickle=False) as npz:
        head = json.loads(npz["header.json"].decode())
        arrays = {k: npz[k] for k in npz.files if k != "header.json"}
    edit(head)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("header.json", json.dumps(head))
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.save(buf, a)
            zf.writestr(name + ".npy", buf.getvalue())
