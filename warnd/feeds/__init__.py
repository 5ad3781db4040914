"""CAP feeds: warnd polls departments' and meteorological feeds, and serves its own."""
