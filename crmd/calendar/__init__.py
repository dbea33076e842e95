"""Working days and 调休, offsets, and schedules: the calendar arithmetic every rule uses."""
