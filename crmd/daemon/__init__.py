"""The daemon: its loop, the group of sites, the instance lock, sd_notify, health and logs."""
