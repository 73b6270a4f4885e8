"""Files vendored from upstream projects, with their provenance and the script that refreshes them."""
