import numpy as np

from openhcs_rules.demo.synthetic import generate_imagexpress_plate
from openhcs_rules.formats.registry import discover_plate
from openhcs_rules.jobs.illumination import estimate_plate_illumination, load_illumination, sample_images


def test_flat_field_recovers_the_vignette_of_a_plate(tmp_path):
    generate_imagexpress_plate(
        tmp_path / "p", wells=["B02", "B03", "C02", "C03"], sites=2, z_planes=1, shape=(128, 128)
    )
    plate = discover_plate(tmp_path / "p")
    profiles = estimate_plate_illumination(plate, tmp_path / "ill.npz")
    assert load_illumination(tmp_path / "ill.npz").keys() == profiles.keys() == {1, 2}
    profile = profiles[1]
    assert abs(float(profile.mean()) - 1) < 1e-3
    assert profile[64, 64] > profile[2, 2] * 1.1  # the synthetic vignette is dimmer in the corners


def test_too_few_images_give_no_correction_rather_than_a_wrong_one(tmp_path, fixtures_dir):
    plate = discover_plate(fixtures_dir / "imagexpress_exported" / "9987_Plate_3434")
    assert len(sample_images(plate, 1, 64)) == 4
    profiles = estimate_plate_illumination(plate, tmp_path / "ill.npz")
    assert all(np.array_equal(p, np.ones_like(p)) for p in profiles.values())
