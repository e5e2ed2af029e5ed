"""benchmarks/publish_dashboard.py: the dashboard's CDN tags point at the local copies (their
integrity hashes dropped), dropped plugins go, and an unknown CDN file is reported."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).parents[1]
spec = importlib.util.spec_from_file_location("publish_dashboard", ROOT / "benchmarks" / "publish_dashboard.py")
publish_dashboard = importlib.util.module_from_spec(spec)
spec.loader.exec_module(publish_dashboard)


def test_cdn_tags_become_local_copies():
    html = ('<script src="https://code.jquery.com/jquery-3.3.1.min.js" integrity="sha256-x" crossorigin="anonymous" '
            'onerror="f()"></script>\n'
            '<script src="https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js"></script>\n'
            '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css" '
            'integrity="sha256-y" crossorigin="anonymous">')
    out, unknown = publish_dashboard.localise(html)
    assert unknown == []
    assert '<script src="vendor/jquery.min.js" onerror="f()"></script>' in out
    assert "flot.time" not in out and "integrity" not in out and "https://" not in out
    assert 'href="vendor/bootstrap.min.css"' in out


def test_an_unknown_cdn_file_is_reported():
    _, unknown = publish_dashboard.localise('<script src="https://example.invalid/new-lib.js"></script>')
    assert unknown == ["https://example.invalid/new-lib.js"]


def test_every_local_copy_is_committed():
    vendor = ROOT / "benchmarks" / "dashboard_vendor"
    for local in filter(None, publish_dashboard.LOCAL.values()):
        assert (vendor / local).stat().st_size > 1000, local
