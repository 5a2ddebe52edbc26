"""The demo page's static files (static/), served by app/api/routers/pages.py."""
