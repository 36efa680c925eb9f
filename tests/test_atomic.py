import pytest

from openhcs_rules.io.atomic import atomic_path, atomic_write_text


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out" / "summary.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_directory_outputs_replace_the_old_one_whole(tmp_path):
    target = tmp_path / "images.zarr"
    for content in ("first", "second"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "data").write_text(content)
    assert (target / "data").read_text() == "second"
    atomic_write_text(tmp_path / "a.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "images.zarr"]
