"""Sampling timestep schedules: turbo's distilled table and grid, custom timesteps snapped to it, and the
base model's shifted schedule."""

import pytest
import torch

from acestep_worker.models.dit.schedules import TURBO_GRID, base_timesteps, snap_turbo_shift, turbo_timesteps


def test_turbo_shift3_is_the_distilled_table():
    expected = [1.0, 21 / 22, 0.9, 5 / 6, 0.75, 9 / 14, 0.5, 0.3]
    assert turbo_timesteps(3.0).tolist() == torch.tensor(expected, dtype=torch.float32).tolist()


def test_turbo_grid_has_twenty_values():
    assert len(TURBO_GRID) == 20 and TURBO_GRID[0] == 1.0


def test_custom_timesteps_drop_trailing_zero_and_snap():
    got = turbo_timesteps(1.0, timesteps=[1.0, 0.8, 0.5, 0.26, 0.0])
    assert got.tolist() == torch.tensor([1.0, 10 / 13, 0.5, 0.25], dtype=torch.float32).tolist()


@pytest.mark.parametrize("shift,expected", [(1.4, 1.0), (2.5, 2.0), (2.6, 3.0), (5.0, 3.0)])
def test_turbo_shift_snaps_to_1_2_3(shift, expected):
    assert snap_turbo_shift(shift) == expected


@pytest.mark.parametrize("steps", range(1, 9))
def test_fewer_turbo_steps_stay_on_the_grid_and_distinct(steps):
    values = turbo_timesteps(3.0, steps).tolist()
    assert len(values) == steps and len(set(values)) == steps
    grid32 = set(torch.tensor(TURBO_GRID, dtype=torch.float32).tolist())
    assert set(values) <= grid32 and values[0] == 1.0


def test_base_schedule_is_shifted_linspace_without_final_zero():
    t = base_timesteps(4, 1.0)
    assert t.tolist() == [1.0, 0.75, 0.5, 0.25]
    shifted = base_timesteps(6, 3.0)
    assert shifted.dtype == torch.float32 and len(shifted) == 6
    assert shifted[1].item() == pytest.approx(3 * (5 / 6) / (1 + 2 * (5 / 6)), abs=1e-6)
