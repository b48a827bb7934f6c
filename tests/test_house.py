"""The house's rules, measured from the source (tests/house.py): no import circle, no import against the
stage direction, no library function past 65 lines, and the export independent of the training loop."""

from tests import house


def test_no_import_circle_anywhere():
    assert house.circles(house.graph()) == []


def test_no_import_against_the_stage_direction():
    assert house.against_the_flow() == []


def test_library_functions_stay_short_and_export_does_not_import_the_training_loop():
    for package in house.PACKAGES:
        (lines, function), _ = house.longest(package)
        assert lines <= 65, function
    edges = house.graph()
    exported = {i for m, e in edges.items() if m.startswith("lvunet_export") for i in e}
    assert "lvunet_edge.train" not in exported and "lvunet_edge.config" in exported


def test_the_scan_sees_a_circle_and_a_wrong_arrow(tmp_path, monkeypatch):
    """The scan itself can fail: a made-up package with a circle and an import of a stage above."""
    folder = tmp_path / "lvunet_runtime"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "a.py").write_text("from lvunet_runtime.b import x\n")
    (folder / "b.py").write_text("def f():\n    from lvunet_runtime import a\n    import torch\n")
    monkeypatch.setattr(
        house, "PACKAGES", {"lvunet_runtime": folder, "lvunet_edge": tmp_path / "none"}
    )
    monkeypatch.setattr(house, "FLOOR", {"lvunet_runtime": 0, "lvunet_edge": 1})
    assert house.circles(house.graph()) == [["lvunet_runtime.a", "lvunet_runtime.b"]]
    assert house.against_the_flow() == ["lvunet_runtime.b -> torch"]
