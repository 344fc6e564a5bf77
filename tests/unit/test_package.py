"""The package itself: light import, one version source, a lazy public API."""

from __future__ import annotations

import subprocess
import sys


def test_import_netcut_does_not_load_heavy_modules():
    code = ("import sys, netcut; heavy = [m for m in ('torch', 'onnxruntime', 'matplotlib', 'timm') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_version_comes_from_one_place():
    from importlib.metadata import version

    import netcut

    assert netcut.__version__ == version("netcut")


def test_public_api_resolves_lazily():
    import netcut

    assert callable(netcut.trim) and callable(netcut.load_backbone)
    try:
        netcut.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("unknown attribute did not raise")
