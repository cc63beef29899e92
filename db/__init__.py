"""Persistent storage for segment-bot: engine, migrations, tables and the stores built on them."""
