import pytest

from openhcs_rules.core.files import atomic_path, atomic_write_text


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


def test_stale_temps_are_exactly_the_targets_own(tmp_path):
    """Only ``.<name>.<8 random>.tmp[.ext]`` of that very target: never another target's, nor a user's file."""
    from openhcs_rules.core.files import remove_stale_temps

    ours = [".heatmap.png.a1b2_c3d.tmp.png", ".wells.csv.zzzzzzzz.tmp"]
    others = [
        ".wells.csv.x.zzzzzzzz.tmp",  # the temp of a target named "wells.csv.x"
        ".wells.csv.zzzzzzz.tmp",  # not our random part
        "wells.csv.zzzzzzzz.tmp",  # not hidden: not ours
        ".wells.csv.zzzzzzzz.tmp~",
        ".objects.csv.zzzzzzzz.tmp",  # another target in the same folder
        "wells.csv",
    ]
    for name in ours + others:
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".wells.csv.zzzzzzzz.tmp").write_text("x")  # another folder
    removed = remove_stale_temps(tmp_path / "wells.csv", tmp_path / "heatmap.png", tmp_path / "missing" / "a.txt")
    assert sorted(p.name for p in removed) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, "sub"])
    assert (tmp_path / "sub" / ".wells.csv.zzzzzzzz.tmp").exists()


def test_a_temp_name_atomic_path_makes_is_recognised_as_its_own(tmp_path):
    from openhcs_rules.core.files import stale_temps

    for suffix in ("", ".tif"):
        target = tmp_path / f"images.zarr{suffix}"
        with atomic_path(target, suffix=suffix) as tmp:
            assert stale_temps(target) == []  # the name is free until the writer creates it
            tmp.mkdir()
            assert stale_temps(target) == [tmp]


def test_only_errors_of_the_outputs_filesystem_are_renamed_after_the_output(tmp_path):
    """A full or read-only disk under the output names the output; an unreadable input elsewhere stays itself."""
    import errno

    from openhcs_rules.core.files import OutputWriteError, write_error

    target = tmp_path / "wells" / "B02" / "images"
    full = write_error(OSError(errno.ENOSPC, "No space left on device"), target)  # write() names no file
    assert isinstance(full, OSError) and full.errno == errno.ENOSPC
    assert str(full).startswith(f"cannot write {target}: No space left on device. The disk is full: free space")
    assert f"df -h {tmp_path}" in str(full)  # the nearest folder that exists, for df to work on
    read_only = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "wells"))  # making the well's folder
    assert "read-only" in str(write_error(read_only, target))
    inner = OutputWriteError(target.with_name(".images.abcd1234.tmp") / "B02_s1_w1.tif", full.cause)
    assert write_error(inner, target).target == target  # the user knows the images folder, not its temp name
    assert write_error(OSError(errno.EACCES, "Permission denied", "/plates/p/B02_s1_w1.tif"), target) is None
    assert write_error(OSError(errno.EIO, "Input/output error"), target) is None
    assert write_error(ValueError("not an OSError"), target) is None
