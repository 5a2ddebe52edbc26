"""Offline training and export. Needs torch; the service in `app/` never imports it."""
